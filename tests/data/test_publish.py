import pytest

from mpds.data import push_to_hub

# A push that reaches a (stand-in) Hub is tested in test_hub_repo.py.


def test_push_of_an_unfinished_build_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="mpds merge"):
        push_to_hub(tmp_path, "me/mpds")
