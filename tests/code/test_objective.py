import torch

from search.objective import MaskingSpec, joint_loss, mask_tokens, stage_at

SPEC = MaskingSpec(mask_id=4, special_ids=(0, 1, 2, 3, 4), vocab_size=50, probability=0.15)


def _batch():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 50, (64, 40), generator=gen)
    lengths = torch.randint(5, 40, (64,), generator=gen)
    mask = (torch.arange(40) < lengths[:, None]).long()
    ids[:, 0] = 2  # [CLS]
    ids[torch.arange(64), lengths - 1] = 3  # [SEP]
    ids[mask == 0] = 0  # [PAD]
    return ids, mask


def test_masking_never_touches_special_or_padding_tokens():
    ids, mask = _batch()
    masked, labels = mask_tokens(ids, mask, SPEC, torch.Generator().manual_seed(1))
    special = torch.isin(ids, torch.tensor(SPEC.special_ids))
    assert (labels[special] == -100).all()
    assert (labels[mask == 0] == -100).all()
    assert torch.equal(masked[special], ids[special])  # specials and pads come back unchanged
    assert torch.equal(labels[labels != -100], ids[labels != -100])


def test_masking_rate_and_80_10_10_rule():
    ids, mask = _batch()
    ids, mask = ids.repeat(20, 1), mask.repeat(20, 1)
    masked, labels = mask_tokens(ids, mask, SPEC, torch.Generator().manual_seed(2))
    eligible = mask.bool() & ~torch.isin(ids, torch.tensor(SPEC.special_ids))
    chosen = labels != -100
    assert abs(chosen.sum() / eligible.sum() - 0.15) < 0.01
    as_mask = (masked[chosen] == SPEC.mask_id).float().mean()
    kept = (masked[chosen] == ids[chosen]).float().mean()
    assert abs(as_mask - 0.8) < 0.02
    assert abs(kept - 0.1) < 0.02 + 1 / 45  # random replacements can hit the same id
    assert not torch.isin(masked[chosen & (masked != SPEC.mask_id)],
                          torch.tensor([0, 1, 2, 3])).any()


def test_joint_loss_weights_task_term_and_stages():
    lm, task = torch.tensor(11.0), torch.tensor(0.7)
    assert joint_loss(lm, task, 10.0).item() == 11.0 + 7.0
    # 10 steps an epoch, 1 joint epoch: steps 0..9 are joint, then task.
    assert [stage_at(s, 10, 1) for s in (0, 9, 10, 25)] == ["joint", "joint", "task", "task"]
    assert stage_at(0, 10, 0) == "task"
