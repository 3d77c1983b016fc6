"""Replaced-token detection (ELECTRA): a small masked-LM generator fills the blanks, a BERT learns which tokens
were replaced.

Masked-LM pretraining learns from the 15-40% of positions it masks; the discriminator here learns from every
position of every row, which is what makes ELECTRA pay at small budgets (its paper: ELECTRA-Small, GLUE
79.9 against 75.1 for a BERT of the same size and compute). One step:

    masked row  -> embeddings -> generator layers -> MLM head   (loss: cross-entropy at the masked positions)
    sample a token at each masked position from the generator's distribution (no gradient through it)
    corrupted row (original tokens, sampled ones at the masked positions)
                -> embeddings -> BERT encoder -> dense -> 1 logit per token  (loss: was it replaced? BCE)
    loss = generator loss + disc_weight x discriminator loss

Generator and discriminator share one embedding table (ELECTRA's tying; both train it), so the generator is
the discriminator's width with fewer layers. A sampled token equal to the original counts as original.

    model = ElectraForPretraining(BertConfig.from_preset("mini", vocab_size=8000), generator_layers=1)
    logits, loss = model(input_ids, attention_mask, labels=labels)   # logits (M, V): the generator's
    model.save_pretrained(out)   # out/: the discriminator as a plain BERT encoder (what to fine-tune);
                                 # out/generator/: a BertForMaskedLM (fill-mask, evaluate-mlm)

Parameter names: `bert.*` is the discriminator (HF BertModel names under `bert.`), `cls.predictions.*` the
generator's MLM head (as BertForMaskedLM's, so the pretraining task's fresh-model init applies unchanged).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from nanobert.fileio import atomic_path
from nanobert.model import checkpoint_io
from nanobert.model.bert import BertConfig, BertForMaskedLM, BertModel, Encoder, MLMHead, PreTrained
from nanobert.model.layers import ACTIVATIONS, additive_mask, packed_mask

HEAD_FILE = "rtd_head.safetensors"  # beside the discriminator's model.safetensors; loaders of a BERT ignore it


def sample(logits: torch.Tensor) -> torch.Tensor:
    """One token id per row of `logits` (M, V), drawn from its softmax, by inverse CDF: one uniform per row
    searched in the cumulative sums. (torch.multinomial and the Gumbel trick draw M x V random numbers: 10x
    slower at M = 820, V = 8,000 on one CPU thread, half of a demo-sized training step.)"""
    cdf = logits.float().softmax(-1).cumsum(-1)  # (M, V)
    u = torch.rand(cdf.shape[0], 1, device=cdf.device) * cdf[:, -1:]  # (M, 1), below the row's total
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)  # (M,)


class DiscriminatorHead(nn.Module):
    """Hidden state -> one logit, "this token was replaced" (HF's ElectraDiscriminatorPredictions shape)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = ACTIVATIONS[cfg.hidden_act]
        self.dense_prediction = nn.Linear(cfg.hidden_size, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.dense_prediction(self.act(self.dense(h))).squeeze(-1)  # (B, T, H) -> (B, T)


class ElectraForPretraining(PreTrained):
    """Generator + discriminator; forward(input_ids, attention_mask, token_type_ids, labels, position_ids)
    -> (generator logits (M, V) at the masked positions, total loss). Without labels: generator logits
    (B, T, V) and loss None (fill-mask). `last_losses` holds the step's generator and discriminator losses,
    the discriminator's accuracy and the share of tokens replaced, as detached scalar tensors, for logging."""

    def __init__(self, config: BertConfig, generator_layers: int = 1, disc_weight: float = 50.0):
        super().__init__()
        if generator_layers < 1:
            raise ValueError(f"generator_layers must be >= 1, got {generator_layers}")
        self.config = config
        self.generator_config = dataclasses.replace(config, num_hidden_layers=generator_layers)
        self.disc_weight = disc_weight
        self.bert = BertModel(config, add_pooling_layer=False)  # the discriminator, and the shared embeddings
        self.generator = Encoder(self.generator_config)
        self.cls = MLMHead(self.generator_config)  # the generator's head, tied to the shared word embeddings
        self.discriminator_head = DiscriminatorHead(config)
        for module in (self.generator, self.cls, self.discriminator_head):
            module.apply(self._init_weights)
        self.last_losses: dict[str, float] = {}

    def _generate(self, input_ids, attention_mask, token_type_ids, position_ids) -> torch.Tensor:
        x = self.bert.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, H)
        mask = additive_mask(attention_mask, x.dtype) if position_ids is None else \
            packed_mask(position_ids, attention_mask, x.dtype)
        return self.generator(x, mask)  # (B, T, H)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, position_ids=None):
        words = self.bert.embeddings.word_embeddings.weight  # (V, H)
        hidden = self._generate(input_ids, attention_mask, token_type_ids, position_ids)  # (B, T, H)
        if labels is None:
            return self.cls.predictions(hidden, words), None  # (B, T, V)
        flat = labels.reshape(-1)  # (B*T,)
        idx = (flat != -100).nonzero().squeeze(1)  # (M,) masked positions
        logits = self.cls.predictions(hidden.reshape(-1, hidden.shape[-1]).index_select(0, idx), words)  # (M, V)
        targets = flat.index_select(0, idx)  # (M,)
        gen_loss = F.cross_entropy(logits.float(), targets) if idx.numel() else hidden.sum() * 0.0

        with torch.no_grad():  # the corrupted row: a sample from the generator at each masked position
            sampled = sample(logits) if idx.numel() else targets
            original = input_ids.reshape(-1).clone()
            original[idx] = targets  # (B*T,) the text before masking
            corrupted = original.clone()
            corrupted[idx] = sampled
            replaced = (corrupted != original).view_as(input_ids).float()  # (B, T)
            corrupted = corrupted.view_as(input_ids)
        h, _ = self.bert(corrupted, attention_mask, token_type_ids, position_ids=position_ids)  # (B, T, H)
        disc_logits = self.discriminator_head(h).float()  # (B, T)
        real = attention_mask.bool() if attention_mask is not None else torch.ones_like(replaced, dtype=torch.bool)
        disc_loss = F.binary_cross_entropy_with_logits(disc_logits[real], replaced[real])
        with torch.no_grad():  # tensors, not floats: reading them would wait for the device every step
            self.last_losses = {"generator_loss": gen_loss.detach(), "discriminator_loss": disc_loss.detach(),
                                "discriminator_accuracy": ((disc_logits[real] > 0).float()
                                                           == replaced[real]).float().mean(),
                                "replaced": replaced[real].mean()}
        return logits, gen_loss + self.disc_weight * disc_loss

    @classmethod
    def from_saved(cls, path: str | Path, disc_weight: float = 50.0, **config_overrides) -> ElectraForPretraining:
        """Continue from what `save_pretrained` wrote (`path` and `path/generator`), e.g. a second phase of
        pretraining on longer sequences. `config_overrides` as in from_pretrained (dropout, ...)."""
        generator = BertForMaskedLM.from_pretrained(Path(path) / "generator", **config_overrides)
        config = BertConfig.from_pretrained(path, **config_overrides)
        model = cls(config, generator.config.num_hidden_layers, disc_weight)
        model.load_report = checkpoint_io.load_state_dict(model.bert, checkpoint_io.read_state_dict(Path(path)),
                                                          source=str(path))
        model.generator.load_state_dict(generator.bert.encoder.state_dict())
        model.cls.load_state_dict(generator.cls.state_dict())
        if (Path(path) / HEAD_FILE).is_file():
            model.discriminator_head.load_state_dict(load_file(Path(path) / HEAD_FILE))
        return model.eval()

    def generator_model(self) -> BertForMaskedLM:
        """The generator as a stand-alone BertForMaskedLM (the shared embeddings copied in)."""
        gen = BertForMaskedLM(self.generator_config)
        gen.bert.embeddings.load_state_dict(self.bert.embeddings.state_dict())
        gen.bert.encoder.load_state_dict(self.generator.state_dict())
        gen.cls.load_state_dict(self.cls.state_dict())
        return gen.train(self.training)

    def save_pretrained(self, path: str | Path, tokenizer=None, require_hf: bool = False) -> None:
        """`path`: the discriminator as a BERT encoder (config.json, model.safetensors: what `nanobert finetune`
        and transformers' BertModel load); `path/generator`: the generator as a BertForMaskedLM;
        `path/rtd_head.safetensors`: the discriminator's head, for `from_saved` to continue pretraining."""
        self.bert.save_pretrained(path, tokenizer=tokenizer, require_hf=require_hf)
        self.generator_model().save_pretrained(Path(path) / "generator", tokenizer=tokenizer, require_hf=require_hf)
        with atomic_path(Path(path) / HEAD_FILE) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in self.discriminator_head.state_dict().items()},
                      str(tmp))
