import torch
from torch import nn

from nanobert.train.optim import layer_decay_scales, make_optimizer, param_groups


def test_decay_only_on_matrices_and_tied_weights_once():
    emb = nn.Embedding(10, 4)
    model = nn.ModuleDict({"emb": emb, "lin": nn.Linear(4, 3), "norm": nn.LayerNorm(4), "head": nn.Linear(4, 10)})
    model["head"].weight = emb.weight  # tied, as BERT's decoder
    decay, no_decay = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(emb.weight), id(model["lin"].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model["lin"].bias), id(model["norm"].weight),
                                                   id(model["norm"].bias), id(model["head"].bias)}


def test_fused_adamw_on_cpu_matches_the_reference_update():
    torch.manual_seed(0)
    a, b = nn.Linear(8, 8), nn.Linear(8, 8)
    b.load_state_dict(a.state_dict())
    opt_a = make_optimizer(a, lr=1e-2, weight_decay=0.1)
    opt_b = torch.optim.AdamW([{"params": [b.weight], "weight_decay": 0.1}, {"params": [b.bias], "weight_decay": 0.0}],
                              lr=1e-2, eps=1e-6, foreach=False)
    assert opt_a.defaults.get("fused") is True
    x = torch.randn(4, 8)
    for _ in range(3):
        for m, o in ((a, opt_a), (b, opt_b)):
            m(x).square().sum().backward()
            o.step()
            o.zero_grad()
    torch.testing.assert_close(a.weight, b.weight)
    torch.testing.assert_close(a.bias, b.bias)


def test_lr_scales_give_named_parameters_a_faster_rate():
    torch.manual_seed(0)
    model = nn.ModuleDict({"base": nn.Linear(4, 4), "lora_B": nn.Linear(4, 4)})
    groups = param_groups(model, 0.0, lr_scales={"lora_B": 16})
    assert len(groups) == 4  # (matrices, vectors) x (1, 16)
    assert {id(p) for g in groups if g["lr_scale"] == 16.0 for p in g["params"]} == {
        id(model["lora_B"].weight), id(model["lora_B"].bias)}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.0, lr_scales={"lora_B": 16})
    x = torch.randn(8, 4)
    (model["base"](x).sum() + model["lora_B"](x).sum()).backward()
    opt.step()
    # Adam's first step moves every parameter by its learning rate (times the sign of its gradient)
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    assert abs(moved["base.weight"] - 1e-3) < 1e-5 and abs(moved["lora_B.weight"] - 16e-3) < 1e-4


def test_layer_decay_scales_and_keys_of_several_parts():
    assert layer_decay_scales(2, 0.5) == {"embeddings": 0.125, "encoder.layer.0": 0.25, "encoder.layer.1": 0.5}
    model = nn.Module()
    model.encoder = nn.Module()
    model.encoder.layer = nn.ModuleList(nn.Linear(2, 2, bias=False) for _ in range(11))
    model.encoder.layer[1].lora_B = nn.Linear(2, 2, bias=False)
    groups = param_groups(model, 0.0, lr_scales={"encoder.layer.1": 0.5, "lora_B": 16})
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    assert scale_of[id(model.encoder.layer[1].weight)] == 0.5
    assert scale_of[id(model.encoder.layer[10].weight)] == 1.0  # "layer.1" is not a prefix of "layer.10"
    assert scale_of[id(model.encoder.layer[1].lora_B.weight)] == 8.0  # both keys: the product
