"""Outputs equal the official SDT-V3 implementation (golden values).

The reference numbers were produced by the official classes (BICLab/Spike-Driven-Transformer-V3 at
commit 00fcd1f: ``Model_Base/models.py``, ``DVS/Hardvs/models_Q_scaling_dvs.py`` with its
``Q_IFNode`` reset per call, ``Model_Large/spikformer.py`` with the forward's undefined names
supplied) at reduced width, eval mode, with the deterministic weights and inputs built below (weights
keyed by state_dict name, so module order does not matter). They pin the block order, neuron
placement, rounding, normalisation, head wiring and time handling of each family.
"""

from __future__ import annotations

import pytest
import torch

from sdt3_event.registry import create_model


def fill_deterministic(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for key, v in model.state_dict().items():
            if not v.is_floating_point():
                continue
            phase = sum(map(ord, key)) % 101
            w = torch.sin(torch.arange(v.numel(), dtype=torch.float64) * 0.37 + phase)
            w = w.reshape(v.shape)
            if key.endswith("running_var"):
                w = 1.0 + 0.5 * w.abs()
            elif key.endswith("running_mean"):
                w = 0.1 * w
            elif v.dim() == 1:
                w = 1.0 + 0.5 * w if ("weight" in key or "layer_scale" in key) else 0.2 * w
            else:
                w = w * (12.0 / v[0].numel()) ** 0.5
            v.copy_(w.float())


def deterministic_input(*shape: int) -> torch.Tensor:
    n = 1
    for s in shape:
        n *= s
    return (torch.sin(torch.arange(n, dtype=torch.float64) * 0.11) * 1.5).reshape(shape).float()


GOLDEN = {
    "base": (
        [[3.5347511768341064, -3.9446940422058105, 0.41805511713027954, 3.0317444801330566, -4.138742446899414],
         [4.12895393371582, -3.293779134750366, -0.9201241731643677, 3.910332202911377, -3.804762840270996]],
        [[-1.3365317583084106, 1.0857656002044678, -0.20940376818180084, -2.000654697418213, 1.7165486812591553, -1.747532606124878, -0.6588069796562195, 2.21567440032959],
         [-1.5514041185379028, 0.7375421524047852, -0.538844883441925, -2.1023223400115967, 1.4430325031280518, -1.6328142881393433, -0.39379024505615234, 2.2048585414886475]],
    ),
    "dvs": (
        [[1.9682286977767944, -3.9116146564483643, 1.9467693567276, 1.2513879537582397, -3.6325578689575195],
         [1.5828876495361328, -2.497441291809082, 0.7157502174377441, 1.244235634803772, -2.393364191055298]],
        [[0.3245973587036133, 16.641130447387695, -12.19115161895752, -4.25163459777832, 14.726469993591309, -23.324539184570312, -5.6081719398498535, 5.580111980438232],
         [-0.41705211997032166, 17.441102981567383, -13.256057739257812, -3.871692419052124, 14.378837585449219, -24.69907569885254, -3.5342023372650146, 4.2791666984558105]],
    ),
    "large": (
        [[-5.020641803741455, -0.5102237462997437, 4.61618185043335, 1.3214558362960815, -4.535578727722168],
         [-4.919276237487793, -0.7437263131141663, 4.459812164306641, 1.5181235074996948, -4.332880973815918]],
        [[6.4543046951293945, -5.658200263977051, -10.13759708404541, 4.432316303253174, 5.022622108459473, 5.592816352844238, 1.7354689836502075, -8.14738655090332],
         [6.797673225402832, -5.334970474243164, -9.963924407958984, 4.523176193237305, 5.160932540893555, 5.729977130889893, 1.7558339834213257, -8.196800231933594]],
    ),
}  # fmt: skip


def build(case: str):
    if case == "base":
        model = create_model("sdt3_2m", embed_dim=(16, 32, 64, 96), num_heads=4, num_classes=5)
        x = deterministic_input(2, 3, 32, 32)
        x[1] *= 0.25
    elif case == "dvs":
        model = create_model(
            "sdt3_19m_hardvs", embed_dim=(16, 32, 64, 96), num_heads=4, num_classes=5, depths=4
        )
        x = deterministic_input(2, 3, 2, 32, 32).abs().round()  # (B, T, P, H, W) counts
    else:
        model = create_model(
            "sdt3_83m_kd", embed_dim=(16, 32, 64), num_heads=4, num_classes=5, depth=2
        )
        x = deterministic_input(2, 3, 32, 32)
    fill_deterministic(model)
    return model.eval(), x


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_matches_official_implementation(case):
    model, x = build(case)
    logits, feats = (torch.tensor(v) for v in GOLDEN[case])
    with torch.no_grad():
        out = model(x)
        f = model.forward_features(x)  # (T, B, C, h, w) or (T, B, C, N)
        pooled = f.flatten(3).mean(3).mean(0)[:, :8]  # (B, 8)
    torch.testing.assert_close(pooled, feats, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out, logits, rtol=1e-4, atol=1e-4)
