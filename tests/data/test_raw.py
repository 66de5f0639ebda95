import csv

import pytest

from mpds.data import RawFormatError, RawRelease
from mpds.data.raw import Reject, check_image


def _meta_rows(raw):
    with open(raw / "meta.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_meta_row_becomes_a_poster_or_a_reject_with_a_reason(sample):
    release = RawRelease(sample)
    scan = release.scan()
    outcomes = list(release.poster_records(scan, release.visual_prompts()))
    assert len(outcomes) == len(_meta_rows(sample)) == scan.num_rows
    kept = [example for _, example, splits in outcomes if splits is not None]
    rejected = [example for _, example, splits in outcomes if splits is None]
    assert len(kept) == 96 and len(rejected) == 6
    assert all(isinstance(reject, Reject) and reject.reason and reject.detail for reject in rejected)


def test_the_sample_faults_are_rejected_each_with_its_own_reason(sample):
    release = RawRelease(sample)
    scan = release.scan()
    reasons = {reject.reason: reject for _, reject, splits in release.poster_records(scan, release.visual_prompts())
               if splits is None}
    assert set(reasons) == {"image_too_small", "image_undecodable", "missing_image", "excluded_genre",
                            "duplicate_id", "invalid_id"}
    assert reasons["image_too_small"].file == "posters/1003.jpg"
    assert "truncated" in reasons["image_undecodable"].detail
    assert "Adult" in reasons["excluded_genre"].detail
    assert reasons["invalid_id"].id is None and "not-a-number" in reasons["invalid_id"].detail
    orphans = list(release.unmatched_visual_prompts(scan))
    assert [(reject.id, reject.reason) for reject in orphans] == [(999999, "unknown_movie")]


def test_rows_without_genres_cast_or_synopsis_are_kept(sample):
    release = RawRelease(sample)
    kept = [example for _, example, splits in release.poster_records(release.scan(), release.visual_prompts()) if splits]
    assert any(not example["genres"] for example in kept)
    assert any(not example["actors"] for example in kept)
    assert any(example["synopsis"] is None for example in kept)
    no_genre = next(splits for _, example, splits in release.poster_records(release.scan(), {}) if splits and not example["genres"])
    assert no_genre == ["train"]


def test_a_poster_belongs_to_train_and_to_each_of_its_genres(sample):
    release = RawRelease(sample)
    for _, example, splits in release.poster_records(release.scan(), {}):
        if splits:
            assert splits[0] == "train" and len(splits) == len(set(splits)) == 1 + len(set(example["genres"]))


def test_actor_photos_are_found_under_all_three_namings(sample):
    photos = RawRelease(sample).actor_photo_paths()
    names = {path.relative_to(sample / "actors").as_posix() for paths in photos.values() for path in paths}
    assert "100.jpg" in names and "107_0.jpg" in names and "114/still-0.jpg" in names
    assert all(3 <= len(paths) <= 6 for paths in photos.values())


def test_actors_keep_their_good_photos_and_report_the_bad_one(sample):
    release = RawRelease(sample)
    outcomes = list(release.actor_records(release.scan()))
    actors = {example["id"]: example for _, example in outcomes if isinstance(example, dict)}
    rejects = [example for _, example in outcomes if isinstance(example, Reject)]
    assert len(actors) == 20
    assert all(3 <= len(actor["images"]) <= 5 for actor in actors.values())
    assert [(reject.id, reject.file) for reject in rejects] == [(100, "actors/100_9.jpg")]
    assert 1018 in actors[100]["movie_ids"] or actors[100]["movie_ids"]


def test_a_release_without_meta_csv_is_refused_with_what_is_expected(tmp_path):
    with pytest.raises(RawFormatError, match="meta.csv is missing"):
        RawRelease(tmp_path)


def test_a_meta_csv_without_an_id_column_is_refused_naming_its_columns(tmp_path):
    (tmp_path / "meta.csv").write_text("title,genres\nAlien,Horror\n")
    with pytest.raises(RawFormatError, match=r"no column 'id' \(its columns: \['title', 'genres'\]\)"):
        RawRelease(tmp_path).scan()


def test_an_unreadable_cell_rejects_its_row_and_keeps_the_others(tmp_path):
    (tmp_path / "meta.csv").write_text('id,title,genres\n1,Good,Drama\n2,Bad,"[\'Drama\', oops]"\n')
    release = RawRelease(tmp_path)
    outcomes = [movie for _, movie in release.movies(release.scan(), "meta")]
    assert outcomes[0].title == "Good"
    assert outcomes[1].reason == "unreadable_cell" and outcomes[1].id == 2


def test_check_image_accepts_a_real_image_and_names_what_is_wrong_otherwise(sample):
    good = (sample / "posters" / "1000.jpg").read_bytes()
    assert check_image(good) is None
    assert check_image(good[:4000])[0] == "image_too_small"
    assert check_image(good[: len(good) - 2000])[0] == "image_undecodable"
    assert check_image(b"<html>" + b"x" * 6000)[0] == "image_undecodable"
