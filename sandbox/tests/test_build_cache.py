"""The build cache: a target is built once, atomically, and a failed build leaves nothing behind."""

from prow_sandbox import build


def test_built_once_then_reused(tmp_path):
    calls = []

    def make(tmp):
        calls.append(tmp)
        tmp.mkdir()
        (tmp / "tool").write_text("binary", encoding="utf-8")

    first = build._build_once(tmp_path / "tools", make, "tools")
    second = build._build_once(tmp_path / "tools", make, "tools")
    assert first == second == tmp_path / "tools"
    assert (first / "tool").read_text(encoding="utf-8") == "binary"
    assert len(calls) == 1


def test_failed_build_leaves_no_target_and_no_temporary(tmp_path):
    def broken(tmp):
        tmp.write_text("half a binary", encoding="utf-8")
        raise RuntimeError("compiler died")

    try:
        build._build_once(tmp_path / "kube-sandbox", broken, "kube-sandbox")
    except RuntimeError as exc:
        assert "compiler died" in str(exc)
    else:
        raise AssertionError("a failed build must raise")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build.lock"]
