"""The DCAL family is wired into the harness: every claim has an experiment, every component registers."""
from reprobench.claims.experiment import load_experiments
from reprobench.claims.ledger import CLAIM_TEXTS
from reprobench.registry import list_components


def test_every_dcal_claim_has_an_experiment():
    ids = {cid for cid in CLAIM_TEXTS if cid.startswith("DCAL-")}
    assert ids == {f"DCAL-{i:02d}" for i in range(1, 12)}
    assert ids <= set(load_experiments())


def test_dcal_components_are_registered():
    names = {spec.name for spec in list_components("models.dcal*")}
    assert names == {"models.dcal", "models.dcal_glca", "models.dcal_pwca", "models.dcal_rollout",
                     "models.dcal_rollout_cache_exact", "models.dcal_rollout_cache_stats",
                     "models.dcal_uncertainty_loss"}
