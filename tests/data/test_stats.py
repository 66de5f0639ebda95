from PIL import Image

from mpds.data import plot_stats, stats_of


def test_stats_of_a_build_count_genres_and_missing_fields(built):
    stats = stats_of(built[0])
    assert stats.num_movies == 99
    # The sample leaves out genres on rows 5, 34, 63, 92, cast on every 13th row from 3 and synopsis
    # on every 6th row from 1 (17 rows); none of those rows is rejected from meta.
    assert (stats.missing["genres"], stats.missing["cast"], stats.missing["synopsis"]) == (4, 8, 17)
    assert abs(stats.missing_share("synopsis") - 17 / 99) < 1e-12
    assert sum(stats.record_types.values()) == 99
    assert stats.genre_counts["Sci-Fi"] == 16 and "Adult" not in stats.genre_counts
    text = str(stats)
    assert "Sci-Fi" in text and "17.17%" in text


def test_stats_of_the_raw_release_agree_with_the_build(built, sample):
    raw, hub = stats_of(sample), stats_of(built[0])
    assert raw.genre_counts == hub.genre_counts and raw.missing == hub.missing


def test_fig2_is_saved_as_a_png(built, tmp_path):
    path = plot_stats(stats_of(built[0]), tmp_path / "fig" / "stats.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (900, 900)
