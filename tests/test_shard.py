"""Shards split a job's users into disjoint shares that cover them all."""

import pytest

from llmrec.errors import ConfigError
from llmrec.shard import Shard


def test_shards_partition_the_users():
    users = list(range(10))
    shares = [Shard.parse(f"{k}/3").of(users) for k in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert Shard().of(users) == users and str(Shard(1, 3)) == "1/3"


@pytest.mark.parametrize("text", ["3/3", "1/0", "-1/2", "1", "a/b", "1/2/3", ""])
def test_a_bad_shard_is_a_config_error(text):
    with pytest.raises(ConfigError, match="a shard is K/N with 0 <= K < N"):
        Shard.parse(text)
