from app.commits import stalled_gap


def test_contiguous_acknowledgements_are_no_gap():
    assert stalled_gap(60, [60, 61, 62]) is None
    assert stalled_gap(60, [61, 62]) is None  # Faust skips a single missing offset itself


def test_a_gap_at_the_head_holds_commits_back():
    assert stalled_gap(60, [200, 201]) == (60, 200)


def test_nothing_acknowledged_or_nothing_committed_is_no_gap():
    assert stalled_gap(60, []) is None
    assert stalled_gap(None, [200]) is None
