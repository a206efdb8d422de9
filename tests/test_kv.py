"""rpclab.kv: the running example behaves like a small Redis of strings."""

from __future__ import annotations

import threading

import pytest

from rpclab.kv import MAX_KEY_LENGTH, MAX_VALUE_LENGTH, KeyNotFound, KVStore


def test_put_get_delete():
    store = KVStore()
    store.put("a", "1")
    assert store.get("a") == "1"
    store.put("a", "2")
    assert store.get("a") == "2"
    assert store.delete("a") is True
    assert store.delete("a") is False
    with pytest.raises(KeyNotFound, match="no such key: 'a'"):
        store.get("a")


def test_missing_key_is_a_key_error():
    with pytest.raises(KeyError):
        KVStore().get("nothing")


def test_increment_counts_from_zero_and_is_not_idempotent():
    store = KVStore()
    assert store.increment("n") == 1
    assert store.increment("n") == 2
    assert store.increment("n", 10) == 12
    assert store.increment("n", -2) == 10
    assert store.get("n") == "10"


def test_increment_refuses_a_non_integer_value_and_amount():
    store = KVStore()
    store.put("name", "ada")
    with pytest.raises(ValueError, match="not an integer"):
        store.increment("name")
    with pytest.raises(TypeError, match="amount must be an int"):
        store.increment("n", 1.5)
    with pytest.raises(TypeError):
        store.increment("n", True)
    assert store.get("name") == "ada"


@pytest.mark.parametrize(
    "key, error", [(1, TypeError), ("", ValueError), ("k" * (MAX_KEY_LENGTH + 1), ValueError)]
)
def test_bad_keys_are_refused(key, error):
    with pytest.raises(error):
        KVStore().put(key, "v")


def test_bad_values_are_refused():
    store = KVStore()
    with pytest.raises(TypeError, match="value must be a str"):
        store.put("k", 3)
    with pytest.raises(ValueError, match="limit"):
        store.put("k", "v" * (MAX_VALUE_LENGTH + 1))
    assert "k" not in store


def test_keys_len_and_contains():
    store = KVStore()
    for k in ("b", "a", "c"):
        store.put(k, k)
    assert store.keys() == ["a", "b", "c"]
    assert len(store) == 3 and "a" in store and "z" not in store


def test_concurrent_increments_are_all_counted(run_threads):
    store = KVStore()

    def work(n):
        for _ in range(500):
            store.increment("n")

    run_threads(work, 8)
    assert store.get("n") == "4000"


def test_changes_since_reports_changes_in_order_and_times_out_empty():
    store = KVStore()
    v0 = store.version
    store.put("a", "1")
    store.increment("a")
    store.delete("a")
    changes = store.changes_since(v0, timeout=0)
    assert [(c.key, c.value) for c in changes] == [("a", "1"), ("a", "2"), ("a", None)]
    assert [c.version for c in changes] == [v0 + 1, v0 + 2, v0 + 3]
    assert store.changes_since(store.version, timeout=0.01) == []


def test_changes_since_wakes_when_another_thread_writes():
    store = KVStore()
    version = store.version
    writer = threading.Thread(target=store.put, args=("k", "v"))
    writer.start()
    changes = store.changes_since(version, timeout=5)
    writer.join()
    assert changes and changes[0].key == "k"


def test_watch_filters_by_prefix_and_stops():
    store = KVStore()
    stop = threading.Event()
    seen = []

    def watcher():
        for change in store.watch("user:", timeout=0.05, stop=stop):
            seen.append(change.key)
            if len(seen) == 2:
                stop.set()

    t = threading.Thread(target=watcher)
    t.start()
    store.put("user:1", "ada")
    store.put("other", "x")
    store.put("user:2", "grace")
    t.join(5)
    assert not t.is_alive()
    assert seen == ["user:1", "user:2"]
