"""Annotation pairs, their undoable commands, autosave and crash safety."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cellpol_core.io.vectors import read_vectors

pytest.importorskip("PySide6")

from PySide6.QtGui import QUndoStack  # noqa: E402

pytestmark = pytest.mark.gui
VOXEL = (2.0, 0.5, 0.5)


@pytest.fixture
def setup(tmp_path, qapp):
    from cellpol_app.annotations import AnnotationModel

    path = tmp_path / "ann" / "img_vectors.csv"
    model = AnnotationModel(voxel_size=VOXEL, autosave_path=path)
    return model, QUndoStack(), path


def _saved(path):
    t = read_vectors(path)
    return t.start.tolist(), t.end.tolist(), t.extra.get("id", np.zeros(0)).tolist()


def test_add_undo_redo_with_autosave(setup):
    from cellpol_app.commands import AddPair

    model, stack, path = setup
    stack.push(AddPair(model, (1, 2, 3), (1, 6, 3)))
    assert model.ids == [1]
    assert _saved(path) == ([[1, 2, 3]], [[1, 6, 3]], [1])
    t = read_vectors(path)
    np.testing.assert_allclose(t.extra["length_um"], [2.0])  # 4 rows * 0.5 µm
    stack.push(AddPair(model, (2, 10, 10), (3, 10, 14)))
    assert model.ids == [1, 2] and len(read_vectors(path)) == 2
    stack.undo()
    assert model.ids == [1] and _saved(path)[2] == [1]
    stack.undo()
    assert len(model) == 0 and len(read_vectors(path)) == 0
    stack.redo()
    stack.redo()
    assert model.ids == [1, 2]  # same ids again
    assert _saved(path) == ([[1, 2, 3], [2, 10, 10]], [[1, 6, 3], [3, 10, 14]], [1, 2])


def test_move_merge_delete_and_swap(setup):
    from cellpol_app.commands import AddPair, DeletePair, MovePoint, SwapEnds

    model, stack, path = setup
    for s, e in [((0, 0, 0), (0, 0, 5)), ((1, 1, 1), (1, 1, 6)), ((2, 2, 2), (2, 2, 7))]:
        stack.push(AddPair(model, s, e))

    stack.push(MovePoint(model, 2, "start", (1, 3, 3)))
    assert model.get(2).start.tolist() == [1, 3, 3]
    assert _saved(path)[0][1] == [1, 3, 3]
    stack.undo()
    assert model.get(2).start.tolist() == [1, 1, 1] and _saved(path)[0][1] == [1, 1, 1]
    stack.redo()

    # A drag: many merged moves are one undo step back to where it began.
    n = stack.count()
    for x in (7, 8, 9):
        stack.push(MovePoint(model, 1, "end", (0, 0, x), drag="d1"))
    assert stack.count() == n + 1 and _saved(path)[1][0] == [0, 0, 9]
    stack.push(MovePoint(model, 1, "end", (0, 0, 10), drag="d2"))  # a new drag
    assert stack.count() == n + 2
    stack.undo()
    stack.undo()
    assert model.get(1).end.tolist() == [0, 0, 5]
    stack.redo()

    stack.push(DeletePair(model, 2))
    assert model.ids == [1, 3] and _saved(path)[2] == [1, 3]
    stack.undo()
    assert model.ids == [1, 2, 3]  # back in its row
    assert model.get(2).start.tolist() == [1, 3, 3]

    stack.push(SwapEnds(model, 1, 3))
    assert model.get(1).end.tolist() == [2, 2, 7] and model.get(3).end.tolist() == [0, 0, 9]
    assert _saved(path)[1] == [[2, 2, 7], [1, 1, 6], [0, 0, 9]]
    stack.undo()
    assert model.get(1).end.tolist() == [0, 0, 9] and model.get(3).end.tolist() == [2, 2, 7]
    assert _saved(path)[1] == [[0, 0, 9], [1, 1, 6], [2, 2, 7]]


def test_listeners_pending_and_reload(setup):
    from cellpol_app.annotations import AnnotationModel
    from cellpol_app.commands import AddPair

    model, stack, path = setup
    calls = []
    model.add_listener(lambda: calls.append(len(model)))
    model.set_pending((4, 5, 6))
    assert model.pending_start.tolist() == [4, 5, 6] and calls == [0]
    assert not path.exists()  # half a pair is not an edit
    stack.push(AddPair(model, model.pending_start, (4, 5, 9)))
    model.set_pending(None)
    assert calls == [0, 1, 1] and model.pending_start is None

    fresh = AnnotationModel()
    fresh.replace_all(read_vectors(path))
    assert fresh.ids == [1] and fresh.get(1).end.tolist() == [4, 5, 9]
    fresh.add_pair((0, 0, 0), (0, 0, 1))
    assert fresh.ids == [1, 2]
    with pytest.raises(ValueError):
        fresh.add_pair((0, 0, 0), (0, 0, 1), pair_id=2)
    with pytest.raises(ValueError):
        fresh.set_point(1, "middle", (0, 0, 0))


def test_snap_to_maximum():
    from cellpol_app.annotations import snap_to_maximum

    vol = np.zeros((9, 20, 20))
    vol[5, 10, 12] = 10.0  # inside the ellipsoid (dz 1 of 2, dx 2 of 4)
    vol[4, 10, 19] = 50.0  # brighter but outside (dx 9 > 4)
    vol[8, 10, 10] = 50.0  # outside in z (dz 4 > 2)
    got = snap_to_maximum(vol, (4.2, 9.8, 10.1), radius=(2, 4, 4))
    np.testing.assert_array_equal(got, [5, 10, 12])
    # Flat data: the click's own voxel.
    np.testing.assert_array_equal(snap_to_maximum(np.ones((3, 5, 5)), (1, 2, 3),
                                                  radius=(1, 2, 2)), [1, 2, 3])
    # Clicks near the border stay inside the volume.
    np.testing.assert_array_equal(snap_to_maximum(vol, (0, 0, 0), radius=(1, 1, 1)), [0, 0, 0])


SCRIPT = textwrap.dedent("""
    import sys, time
    from PySide6.QtGui import QUndoStack
    from cellpol_app.annotations import AnnotationModel
    from cellpol_app.commands import AddPair, MovePoint, DeletePair

    model = AnnotationModel(autosave_path=sys.argv[1])
    stack = QUndoStack()
    stack.push(AddPair(model, (1, 1, 1), (1, 1, 4)))
    stack.push(AddPair(model, (2, 2, 2), (2, 2, 5)))
    stack.push(AddPair(model, (3, 3, 3), (3, 3, 6)))
    stack.push(MovePoint(model, 1, "end", (1, 1, 8)))
    stack.push(DeletePair(model, 2))
    print("edits done", flush=True)
    while True:
        time.sleep(0.05)
        model.set_pending((5, 5, 5))  # busy, like a user between clicks
""")


def test_kill_then_reopen_keeps_every_edit(tmp_path):
    from cellpol_app.annotations import AnnotationModel

    path = tmp_path / "autosave_vectors.csv"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(path)], stdout=subprocess.PIPE,
                            env=env, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "edits done"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    reopened = AnnotationModel()
    reopened.replace_all(read_vectors(path))
    assert reopened.ids == [1, 3]
    assert reopened.get(1).end.tolist() == [1, 1, 8]
    assert reopened.get(3).start.tolist() == [3, 3, 3]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != path.name]
    assert leftovers == []


def test_many_signal_emits_do_not_exhaust_true(qapp):
    """PySide6 6.12.0 drops a reference to True per emit; the app works around it."""
    from PySide6.QtCore import QObject, Signal

    import cellpol_app.commands  # noqa: F401  (applies the workaround)

    class Emitter(QObject):
        changed = Signal(int)

    emitter = Emitter()
    seen = []
    emitter.changed.connect(seen.append)
    for i in range(20000):  # well over the ~3000 references True starts with
        emitter.changed.emit(i)
    assert len(seen) == 20000 and sys.getrefcount(True) > 1000


def test_add_pairs_is_one_step_and_one_save(setup, monkeypatch):
    from cellpol_app import annotations
    from cellpol_app.commands import AddPairs

    model, stack, path = setup
    writes = []
    real = annotations.write_vectors
    monkeypatch.setattr(annotations, "write_vectors",
                        lambda *a, **k: (writes.append(1), real(*a, **k)))
    stack.push(AddPairs(model, [(0, 0, 0), (1, 1, 1)], [(0, 0, 3), (1, 1, 4)]))
    assert model.ids == [1, 2] and len(writes) == 1 and len(read_vectors(path)) == 2
    stack.undo()
    assert len(model) == 0 and len(writes) == 2 and len(read_vectors(path)) == 0
    stack.redo()
    assert model.ids == [1, 2]
    with pytest.raises(ValueError):
        model.add_pairs([(0, 0, 0)], [(0, 0, 1)], ids=[2])
    with pytest.raises(KeyError):
        model.remove_pairs([7])
