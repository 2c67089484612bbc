from sipfleet.devcluster.kubelet.server import tail_lines


def test_tail_lines() -> None:
    data = b"a\nb\nc\n"
    assert tail_lines(data, 2) == b"b\nc\n"
    assert tail_lines(data, 10) == data
    assert tail_lines(data, 0) == b""
    assert tail_lines(b"a\nb", 1) == b"b"
