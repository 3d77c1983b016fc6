import torch
import pytest

from nanobert.errors import NanobertError
from nanobert.train import checkpoints
from nanobert.train.loop import LoopConfig, train

from loop_stubs import Batches, TinyMLM


def cfg(**kw):
    base = dict(max_steps=30, lr=3e-2, min_lr=3e-3, warmup_steps=3, eval_every=10, checkpoint_every=10,
                log_every=5, progress=False, tensorboard=False, plots=False,
                precision="fp32")  # exact comparisons: "auto" may pick bf16 on this CPU
    return LoopConfig(**{**base, **kw})


class Recorder:
    def __init__(self):
        self.steps, self.evals, self.ckpts, self.ended = [], [], [], False

    def on_step_end(self, state):
        self.steps.append(state.step)

    def on_eval(self, state, metrics):
        self.evals.append((state.step, metrics["loss"]))

    def on_checkpoint(self, state, path):
        self.ckpts.append(path.name)

    def on_train_end(self, state):
        self.ended = True


def test_tiny_model_learns_and_the_run_is_recorded(tmp_path):
    torch.manual_seed(0)
    model, rec = TinyMLM(), Recorder()
    val = [next(Batches(seed=99)) for _ in range(3)]
    state = train(model, Batches(), cfg(max_checkpoints=2, plots=True), tmp_path, eval_data=lambda: val, callbacks=[rec])
    assert state.step == 30 and rec.steps == list(range(1, 31)) and rec.ended
    assert [s for s, _ in rec.evals] == [0, 10, 20, 30]
    assert rec.evals[-1][1] < 0.7 * rec.evals[0][1]  # val loss falls
    assert state.metrics["accuracy"] > 0.5
    assert rec.ckpts == ["step-00000010", "step-00000020", "step-00000030"]
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path)] == ["step-00000020", "step-00000030"]
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,split,loss,accuracy,perplexity,lr,tokens_per_s,mfu" and len(lines) == 1 + 4 + 6
    assert (tmp_path / "loss.png").stat().st_size > 1000 and (tmp_path / "accuracy.png").exists()
    assert "val loss" in (tmp_path / "train.log").read_text()


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    # micro-batches hold different numbers of targets: they must be weighted by them, not averaged
    results = []
    for size, micro in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = TinyMLM()
        train(model, Batches(size=size, micro=micro), cfg(max_steps=5, grad_accum=micro, checkpoint_every=0))
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-5)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = TinyMLM()

    class Poison:
        def on_step_end(self, state):
            if state.step == 13:
                state.model.poison = True
                self.weights = [p.detach().clone() for p in state.model.parameters()]

    poison = Poison()
    with pytest.raises(NanobertError, match=r"loss became nan at step 14.*last good checkpoint: .*step-00000010"):
        train(model, Batches(), cfg(), tmp_path, callbacks=[poison])
    assert all(torch.equal(a, b) for a, b in zip(poison.weights, model.parameters()))  # no update
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path)] == ["step-00000010"]
    fresh = TinyMLM()
    checkpoints.load_checkpoint(tmp_path / "step-00000010", fresh)
    assert all(torch.isfinite(p).all() for p in fresh.parameters())


def test_interrupted_run_resumes_bit_for_bit(tmp_path):
    """In-process version of the SIGKILL test (tests/train/test_resume.py): dropout uses the global RNG."""
    def fresh():
        torch.manual_seed(0)
        return TinyMLM(dropout=0.2)

    full = fresh()
    train(full, Batches(), cfg(), tmp_path / "full")

    class Crash:
        def on_step_end(self, state):
            if state.step == 16:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(fresh(), Batches(), cfg(), tmp_path / "cut", callbacks=[Crash()])
    torch.manual_seed(123)  # whatever the RNG holds now must not matter
    resumed = fresh()
    state = train(resumed, Batches(), cfg(), tmp_path / "cut", resume=True)
    assert state.step == 30
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), resumed.state_dict().values()))
    rows = lambda p: [r.split(",")[:5] for r in (p / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert rows(tmp_path / "full") == rows(tmp_path / "cut")  # the same history, no duplicated rows


def test_existing_checkpoints_need_resume_and_resume_needs_a_checkpoint(tmp_path):
    train(TinyMLM(), Batches(), cfg(max_steps=10), tmp_path)
    with pytest.raises(NanobertError, match="already holds checkpoints"):
        train(TinyMLM(), Batches(), cfg(max_steps=10), tmp_path)
    with pytest.raises(NanobertError, match="nothing to resume"):
        train(TinyMLM(), Batches(), cfg(max_steps=10), tmp_path / "new", resume=True)


class LastAccuracy(TinyMLM):
    """TinyMLM that also keeps the share of right argmax predictions of its last training forward."""

    def forward(self, input_ids, attention_mask=None, labels=None):
        logits, loss = super().forward(input_ids, attention_mask, labels)
        if self.training:
            self.last = float((logits.argmax(-1) == labels[labels != -100]).float().mean())
        return logits, loss


def test_train_rows_hold_the_accuracy_of_their_step(tmp_path):
    # the loop counts right predictions only on the steps that write a train row: those counts must be exact
    torch.manual_seed(0)
    model, seen = LastAccuracy(), {}
    cb = type("Seen", (), {"on_step_end": lambda self, state: seen.__setitem__(state.step, model.last)})()
    train(model, Batches(), cfg(max_steps=12, log_every=5, checkpoint_every=0), tmp_path, callbacks=[cb])
    rows = [line.split(",") for line in (tmp_path / "metrics.csv").read_text().splitlines()[1:]]
    logged = {int(r[0]): float(r[3]) for r in rows if r[1] == "train"}
    assert sorted(logged) == [5, 10, 12]
    assert all(abs(logged[s] - seen[s]) < 1e-5 for s in logged) and max(logged.values()) > 0


def test_auto_precision_is_timed_once_and_kept_on_resume(tmp_path, monkeypatch):
    """On a CPU with bf16 instructions "auto" times a step both ways; the choice is saved and a resumed run keeps
    it even where a new timing would choose otherwise."""
    from nanobert.train import loop, precision
    monkeypatch.setattr(loop, "needs_timing", lambda p, device: p == "auto")
    monkeypatch.setattr(precision, "time_precisions", lambda step, repeats=3: (step(False), step(True), (1.0, 0.5))[-1])

    class Crash:
        def on_step_end(self, state):
            if state.step == 12:
                raise KeyboardInterrupt

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(TinyMLM(), Batches(), cfg(precision="auto"), tmp_path / "run", callbacks=[Crash()])
    saved = checkpoints.load_checkpoint(checkpoints.latest_checkpoint(tmp_path / "run"), TinyMLM())
    assert saved["precision"] == "bf16"
    monkeypatch.setattr(precision, "time_precisions", lambda step, repeats=3: (1.0, 2.0))  # now fp32 would win
    state = train(TinyMLM(), Batches(), cfg(precision="auto"), tmp_path / "run", resume=True)
    assert state.precision == "bf16" and state.step == 30
    fresh = train(TinyMLM(), Batches(), cfg(precision="auto", max_steps=2), tmp_path / "fresh")
    assert fresh.precision == "fp32"
    assert train(TinyMLM(), Batches(), cfg(max_steps=2), tmp_path / "fixed").precision == "fp32"  # no timing asked
