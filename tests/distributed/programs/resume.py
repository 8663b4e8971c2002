"""mpiexec -n 2 python -m mpi4py resume.py CKPT EPOCHS OUT: resume a checkpoint on two ranks
(half the global batch each) and train to EPOCHS; rank 0 writes the values."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

from graphc import nn  # noqa: E402

ckpt, epochs, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
X, y = common.data()
model = nn.Model.load(ckpt)  # distributed as saved
model.fit(X, y, epochs=epochs, batch_size=common.BATCH, initial_epoch=model.epoch, progress=False)
if model.world.is_root:
    common.save_values(out / "values.npz", model.graph.values)
