import pytest

from mpds import prompts
from mpds.testing import build_tokenizer


@pytest.fixture(scope="module")
def char_tokenizer():
    """A CLIP tokenizer with no merges: one token per character, the worst case for the 77-token window."""
    return build_tokenizer()


def test_synopsis_prompt_has_title_genres_top_billed_cast_and_synopsis():
    text = prompts.synopsis_prompt("Alien", ["Horror", "Sci-Fi"], ["Sigourney Weaver", "Tom Skerritt", "John Hurt", "Ian Holm"],
                                   "  A  crew meets\na creature. ")
    assert text == ("Alien, a horror and sci-fi movie starring Sigourney Weaver, Tom Skerritt and John Hurt. "
                    "A crew meets a creature.")


def test_synopsis_prompt_leaves_out_missing_parts():
    assert prompts.synopsis_prompt("Alien", [], [], None) == "Alien, a movie."
    assert prompts.synopsis_prompt(None, ["Drama"], [], None) == "A drama movie."


def test_caption_is_the_title_then_the_top_billed_names():
    assert prompts.poster_caption("Alien", ["A B", "C D", "E F", "G H"]) == "Alien\nA B, C D, E F"
    assert prompts.poster_caption("Alien", []) == "Alien"


def test_merged_prompt_puts_the_visual_description_first():
    merged = prompts.merge_prompt("a red poster", "Alien, a movie.")
    assert merged == "a red poster. Alien, a movie."


def test_merged_prompt_fits_the_window_exactly_and_cuts_the_synopsis_at_a_word_boundary(char_tokenizer):
    visual = "a dark poster with a ship"
    synopsis = prompts.synopsis_prompt("Alien", ["Horror"], ["Sigourney Weaver"], "word " * 40 + "end")
    merged = prompts.merge_prompt(visual, synopsis, count_tokens=prompts.token_counter(char_tokenizer))
    ids = char_tokenizer(merged)["input_ids"]
    assert len(ids) <= 77
    assert merged.startswith(visual + ". ")
    rest = merged[len(visual) + 2:]
    assert synopsis.startswith(rest) and synopsis[len(rest)] == " "  # whole words only
    # One more word would not have fitted.
    next_word = synopsis[len(rest):].split()[0]
    assert len(char_tokenizer(merged + " " + next_word)["input_ids"]) > 77


def test_a_visual_description_longer_than_the_window_is_itself_trimmed(char_tokenizer):
    visual = " ".join(["poster"] * 30)
    merged = prompts.merge_prompt(visual, "Alien, a movie.", count_tokens=prompts.token_counter(char_tokenizer))
    assert len(char_tokenizer(merged)["input_ids"]) <= 77
    assert set(merged.split()) == {"poster"}


def test_default_estimate_counts_at_least_one_token_per_word_and_punctuation():
    assert prompts.estimate_clip_tokens("a red poster, 1999!") >= 3 + 1 + 4 + 1


def test_empty_inputs_give_an_empty_prompt():
    assert prompts.merge_prompt(None, None) == ""
    assert prompts.merge_prompt("", "Alien, a movie.") == "Alien, a movie."


def test_a_window_with_no_room_is_refused():
    with pytest.raises(ValueError, match="max_tokens"):
        prompts.merge_prompt("a", "b", max_tokens=2)
