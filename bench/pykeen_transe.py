"""Train PyKEEN's TransE on id-mapped triples and write its vectors (run with PyKEEN's venv python,
bench/setup_pykeen.sh; bench/kg_pykeen.py calls it).

    $PYKEEN_PY bench/pykeen_transe.py --triples in.npz --dim 64 --epochs 100 --lr 0.01 --margin 1.0 \
        --batch-size 4096 --seed 2020 --out vectors.npz

in.npz holds ``train`` [n, 3] (head, relation, tail ids), ``n_entities``, ``n_relations`` and, for
link prediction, ``test``. The recipe is seqtune's (models/kg_embed.py): L2 distance, margin ranking
loss, one negative per triple from PyKEEN's basic sampler, entities constrained to unit length after
every step (PyKEEN's TransE default), Adam. With ``test``, PyKEEN's own filtered rank-based evaluator
scores it (realistic ranks, head and tail), so our evaluator can be checked against PyKEEN's.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triples", required=True)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import pykeen
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.losses import MarginRankingLoss
    from pykeen.models import TransE
    from pykeen.training import SLCWATrainingLoop
    from pykeen.triples import TriplesFactory
    from pykeen.utils import set_random_seed

    torch.set_num_threads(args.threads)
    data = np.load(args.triples)
    n_entities, n_relations = int(data["n_entities"]), int(data["n_relations"])
    train = torch.as_tensor(data["train"], dtype=torch.long)
    factory = TriplesFactory(mapped_triples=train, entity_to_id={str(i): i for i in range(n_entities)},
                             relation_to_id={str(i): i for i in range(n_relations)})
    set_random_seed(args.seed)
    model = TransE(triples_factory=factory, embedding_dim=args.dim, scoring_fct_norm=2,
                   loss=MarginRankingLoss(margin=args.margin), random_seed=args.seed)
    optimizer = torch.optim.Adam(model.get_grad_params(), lr=args.lr)
    loop = SLCWATrainingLoop(model=model, triples_factory=factory, optimizer=optimizer,
                             negative_sampler="basic", negative_sampler_kwargs={"num_negs_per_pos": 1})
    tic = time.perf_counter()
    losses = loop.train(triples_factory=factory, num_epochs=args.epochs, batch_size=args.batch_size,
                        use_tqdm=False)
    seconds = time.perf_counter() - tic
    report = {"pykeen": pykeen.get_version(), "torch": torch.__version__, "train_s": seconds,
              "first_loss": losses[0], "last_loss": losses[-1]}
    if "test" in data.files:
        test = torch.as_tensor(data["test"], dtype=torch.long)
        results = RankBasedEvaluator(filtered=True).evaluate(
            model, test, additional_filter_triples=[train], batch_size=256, use_tqdm=False)
        report["pykeen_evaluator"] = {"mrr": float(results.get_metric("both.realistic.inverse_harmonic_mean_rank")),
                                      "hits@10": float(results.get_metric("both.realistic.hits_at_10"))}
    with torch.no_grad():
        entity = model.entity_representations[0](indices=None).cpu().numpy()
        relation = model.relation_representations[0](indices=None).cpu().numpy()
    np.savez(args.out, entity=entity, relation=relation, losses=np.asarray(losses))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
