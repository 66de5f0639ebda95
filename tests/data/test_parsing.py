import pytest

from mpds.data.parsing import CellError, normalize_header, parse_cast, parse_id, parse_list, parse_url_list, split_name


@pytest.mark.parametrize(
    "cell",
    ["['Drama', 'Sci-Fi']", '["Drama", "Sci-Fi"]', "Drama|Sci-Fi", "Drama; Sci-Fi", "Drama, Sci-Fi", "('Drama', 'Sci-Fi')"],
)
def test_list_cells_parse_the_same_whatever_their_style(cell):
    assert parse_list(cell) == ["Drama", "Sci-Fi"]


@pytest.mark.parametrize("cell", [None, "", "  ", "[]", "nan", "None", "{}"])
def test_empty_list_cells_are_empty_lists(cell):
    assert parse_list(cell) == []


def test_list_cells_are_never_evaluated_as_code():
    # A literal that would run code is refused, not executed.
    with pytest.raises(CellError, match="does not parse"):
        parse_list("[__import__('os').getcwd()]")
    # Text that merely looks like code stays text.
    assert parse_list("__import__('os')") == ["__import__('os')"]


def test_cast_from_a_python_dict_keeps_billing_order_and_reads_ids_from_urls():
    cell = "{'Ava Stone': 'https://www.imdb.com/name/nm0000100/', 'Liam Hart': 'https://www.imdb.com/name/nm0002024/'}"
    assert parse_cast(cell) == [
        {"id": 100, "name": "Ava Stone", "url": "https://www.imdb.com/name/nm0000100/"},
        {"id": 2024, "name": "Liam Hart", "url": "https://www.imdb.com/name/nm0002024/"},
    ]


@pytest.mark.parametrize(
    "cell",
    [
        '{"Ava Stone": "https://www.imdb.com/name/nm0000100/"}',
        "Ava Stone: https://www.imdb.com/name/nm0000100/",
        "Ava Stone=https://www.imdb.com/name/nm0000100/",
        "Ava Stone (https://www.imdb.com/name/nm0000100/)",
        '[["Ava Stone", "https://www.imdb.com/name/nm0000100/"]]',
    ],
)
def test_cast_cells_in_every_style(cell):
    assert parse_cast(cell) == [{"id": 100, "name": "Ava Stone", "url": "https://www.imdb.com/name/nm0000100/"}]


def test_cast_of_names_only_has_no_ids():
    assert parse_cast("Ava Stone, Liam Hart") == [
        {"id": None, "name": "Ava Stone", "url": None},
        {"id": None, "name": "Liam Hart", "url": None},
    ]


@pytest.mark.parametrize("cell, expected", [("2024", 2024), (" 2024 ", 2024), ("2024.0", 2024), ("tt0002024", 2024)])
def test_ids(cell, expected):
    assert parse_id(cell) == expected


@pytest.mark.parametrize("cell", [None, "", "abc", "-3", "0", "12x"])
def test_bad_ids_raise_with_the_cell(cell):
    with pytest.raises(CellError):
        parse_id(cell)


@pytest.mark.parametrize(
    "genre, split",
    [("Drama", "drama"), ("Sci-Fi", "sci_fi"), ("Film-Noir", "film_noir"), ("Reality-TV", "reality_tv"),
     ("Talk-Show", "talk_show"), ("Game-Show", "game_show")],
)
def test_genre_split_names(genre, split):
    assert split_name(genre) == split


def test_headers_are_normalised():
    assert normalize_header("Actors Name") == normalize_header("actors_name") == "actors-name"


def test_image_urls_with_commas_stay_whole():
    url = "https://m.media-amazon.com/images/M/MV5B._V1_QL75_UX380_CR0,0,380,562_.jpg"
    assert parse_url_list(url) == [url]
    assert parse_url_list(f"{url}, https://a.org/2.jpg") == [url, "https://a.org/2.jpg"]
    assert parse_url_list(f'["{url}"]') == [url]
