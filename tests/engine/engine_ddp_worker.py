"""Entry point run by torchrun in the DDP test: ``engine_ddp_worker.py OUT_DIR NAME``."""

import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, as pytest's pythonpath

from engine.engine_toy import toy_config, toy_datasets  # noqa: E402

from sdt3_event.engine.distributed import exit_process  # noqa: E402
from sdt3_event.engine.runner import fit  # noqa: E402

if __name__ == "__main__":
    out, name = sys.argv[1], sys.argv[2]
    cfg = toy_config(out, name=name, data={"batch_size": 4}, train={"ema_decay": 0.0})
    fit(cfg, datasets=toy_datasets())
    exit_process(0)  # as the train CLI does under torchrun
