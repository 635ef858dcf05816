"""sweep's own tables beside Optuna's, in one MetaData: `sweep_claims` (who runs each (config, repeat)),
`sweep_studies` (the studies sweep created) and `sweep_configs` (each configuration's number and values)."""

from __future__ import annotations

import sqlalchemy as sa

METADATA = sa.MetaData()
CLAIMS = sa.Table(
    "sweep_claims",
    METADATA,
    sa.Column("study_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("config", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("repeat", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("trial_id", sa.Integer, nullable=True),  # None between the claim and the trial's creation
    sa.Column("launcher", sa.String(255), nullable=False),
    sa.Column("stamped", sa.Float, nullable=False),  # Unix time of the launcher's last heartbeat
)
STUDIES = sa.Table(
    "sweep_studies",
    METADATA,
    sa.Column("study_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("created", sa.Float, nullable=False),
)
CONFIGS = sa.Table(
    "sweep_configs",
    METADATA,
    sa.Column("study_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("config", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("config_values", sa.Text, nullable=False),  # canonical JSON (`identity.values_text`)
    sa.UniqueConstraint("study_id", "key", name="sweep_configs_key"),
)
