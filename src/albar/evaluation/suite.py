"""The bias evaluation suite: IID test plus every configured bias set, summarised with the documented keys."""

from __future__ import annotations

from accelerate import Accelerator
from torch import nn

from albar.data.build import DataBundle
from albar.data.views import ViewDataset
from albar.evaluation.metrics import Predictions, bias_summary
from albar.evaluation.predict import predict
from albar.evaluation.views import predict_views


def predict_all(
    model: nn.Module, data: DataBundle, accelerator: Accelerator, batch_size: int = 32, num_workers: int = 0,
    progress: bool = False,
) -> dict[str, Predictions]:
    out = {}
    for name, ds in data.eval_sets().items():
        if isinstance(ds, ViewDataset):  # several views per video, softmax averaged; one process
            out[name] = predict_views(accelerator.unwrap_model(model), ds, max(1, batch_size // ds.view.num_views),
                                      num_workers, accelerator.device, progress=progress)
        else:
            out[name] = predict(model, ds, accelerator, batch_size, num_workers, progress=progress, desc=name)
    return out


def summarise(preds: dict[str, Predictions]) -> dict:
    """Predictions by set name (test, scuba_<src>, scufo_<src>, conflfg) -> the results block of a method."""
    scuba = {k.removeprefix("scuba_"): v for k, v in preds.items() if k.startswith("scuba_")}
    scufo = {k.removeprefix("scufo_"): v for k, v in preds.items() if k.startswith("scufo_")}
    return bias_summary(iid=preds.get("test"), scuba=scuba or None, scufo=scufo or None, conflfg=preds.get("conflfg"))


def evaluate_suite(
    model: nn.Module, data: DataBundle, accelerator: Accelerator, batch_size: int = 32, num_workers: int = 0,
    progress: bool = False,
) -> dict:
    return summarise(predict_all(model, data, accelerator, batch_size, num_workers, progress))
