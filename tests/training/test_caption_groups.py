"""Several captions of one image in a batch are never each other's negatives."""
from __future__ import annotations

import torch

from daer_core.data.loader import image_groups, make_loader
from daer_core.interfaces import PairRecord, TrainBatch
from plugins.recipes.contrastive import excluded, info_nce, vse_loss


def test_groups_number_images_in_order_of_appearance():
    assert image_groups(["b", "a", "b", "c", "a"]).tolist() == [0, 1, 0, 2, 1]


def test_loader_batches_carry_the_image_groups():
    records = [PairRecord(id=f"p{i}", text=f"caption {i}", image="unused.png", labels=(0,),
                          image_id=f"img{i // 2}") for i in range(6)]
    loader = make_loader(records, None, batch_size=6, num_classes=1, with_images=False)
    batch = next(iter(loader))
    assert batch.groups.tolist() == [0, 0, 1, 1, 2, 2]
    tb = TrainBatch(ids=batch.ids, text=None, images=None, labels=batch.labels,
                    groups=batch.groups)
    same = tb.same_image()
    assert same[0, 1] and same[1, 0] and not same[0, 2]
    # pairs without an image id each have their own image
    alone = [PairRecord(id=f"q{i}", text="t", image="x.png", labels=(0,)) for i in range(3)]
    batch = next(iter(make_loader(alone, None, batch_size=3, num_classes=1,
                                  with_images=False)))
    assert batch.groups.tolist() == [0, 1, 2]


def test_excluded_takes_captions_of_one_image_out_of_the_negatives():
    labels = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0]])
    groups = torch.tensor([0, 0, 1])
    skip = excluded(labels, "all", groups)
    assert skip.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    assert excluded(labels, "all").tolist() == torch.eye(3, dtype=torch.bool).tolist()


def test_info_nce_ignores_the_other_caption_of_the_same_image():
    # captions 0 and 1 describe one image (columns 0 and 1 hold the same picture): with the
    # groups, the loss equals the one of a batch where that column is not there at all
    torch.manual_seed(0)
    sim = torch.rand(3, 3)
    sim[:, 1] = sim[:, 0]  # the same image embedded twice
    scale = torch.tensor(10.0)
    groups = torch.tensor([0, 0, 1])
    loss = info_nce(sim, scale, excluded(torch.zeros(3, 0), "all", groups))
    # by hand: row 0 softmax over columns {0, 2}, row 1 over {1, 2}, row 2 over all three;
    # column 0 over rows {0, 2}, column 1 over {1, 2}, column 2 over all three
    logits = scale * sim
    rows = [torch.logsumexp(logits[0, [0, 2]], 0) - logits[0, 0],
            torch.logsumexp(logits[1, [1, 2]], 0) - logits[1, 1],
            torch.logsumexp(logits[2], 0) - logits[2, 2]]
    cols = [torch.logsumexp(logits[[0, 2], 0], 0) - logits[0, 0],
            torch.logsumexp(logits[[1, 2], 1], 0) - logits[1, 1],
            torch.logsumexp(logits[:, 2], 0) - logits[2, 2]]
    expected = 0.5 * (torch.stack(rows).mean() + torch.stack(cols).mean())
    assert torch.allclose(loss, expected, atol=1e-6)


def test_vse_hardest_negative_is_never_the_same_image():
    # without groups, caption 1 (same image as caption 0) would be caption 0's hardest
    # negative and give a hinge; with them, only the real negative counts
    sim = torch.tensor([[0.9, 0.95, 0.1],
                        [0.95, 0.9, 0.1],
                        [0.1, 0.1, 0.9]])
    groups = torch.tensor([0, 0, 1])
    with_groups = vse_loss(sim, 0.2, True, excluded(torch.zeros(3, 0), "all", groups))
    assert with_groups.item() == 0.0
    without = vse_loss(sim, 0.2, True, excluded(torch.zeros(3, 0), "all"))
    assert without.item() > 0.5
