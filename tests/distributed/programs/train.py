"""mpiexec -n 2 python -m mpi4py train.py OPT BACKEND OUT: data-parallel training, then what the
tests compare with one process: parameters, history, evaluate/predict, and a checkpoint."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import graphc.io.checkpoint as checkpoint  # noqa: E402
from graphc.distributed.checks import values_digest  # noqa: E402
from graphc.nn.history import History  # noqa: E402

opt, backend, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
X, y = common.data()
model = common.model(opt, distributed=True, backend=backend)
world = model.world
model.fit(X, y, epochs=3, batch_size=common.BATCH, progress=False)

writers = out / "writers.txt"
save = checkpoint.save_checkpoint


def logged_save(*args, **kw):  # every rank that writes the checkpoint says so
    with open(writers, "a") as f:
        f.write(f"rank {world.rank}\n")
    return save(*args, **kw)


checkpoint.save_checkpoint = logged_save
saved = model.save(out / "ckpt")
plot = History.plot


def logged_plot(self, path, **kw):
    with open(writers, "a") as f:
        f.write(f"curves: rank {world.rank}\n")
    return plot(self, path, **kw)


History.plot = logged_plot
curves = model.plot_history(out / "curves.png")
report = {
    "rank": world.rank,
    "size": world.size,
    "values": values_digest(model.graph.values),
    "history": model.history.to_dict(),
    "evaluate": model.evaluate(X, y),
    "predict": model.predict(X).round(6).tolist(),
    "predict_one": model.predict(X[:1], logits=True).tolist(),  # fewer samples than ranks: rank 1 has none
    "evaluate_one": model.evaluate(X[:1], y[:1]),
    "saved": str(saved),
    "curves": str(curves),
    "step": model.step,
}
every = world.allgather(report)
if world.is_root:
    common.save_values(out / "values.npz", model.graph.values)
    (out / "report.json").write_text(json.dumps(every))
