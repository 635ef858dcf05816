"""Optuna's RDBStorage made to wait out a database outage (`sweep.store.outage`): each call a launcher
makes goes through its `StorageOutage`.

Private API: Optuna's cache layer calls the storage's private `_create_new_trial`, `_set_trial_param`,
`_get_trials` and `_get_best_trial_id`, so those are among the calls made through the outage. A trial is
created with a nonce, kept as a system attribute (Optuna's own bookkeeping: sweep's user attributes stay
as they were); a creation whose answer was lost is looked up by it, not repeated. A trial's end repeated
onto that same end counts as done.
"""

from __future__ import annotations

import copy
import datetime
import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from sweep._compat import rdb_models

if TYPE_CHECKING:
    from sweep.store.outage import StorageOutage

NONCE = "sweep:created"  # the system attribute a trial is created with: found again after a lost answer
T = TypeVar("T")


class RidingStorage(RDBStorage):
    """RDBStorage at `url` whose every call is made through a launcher's `outage`; `pool_pre_ping`: a
    connection the database dropped while idle is replaced, not used.

    The calls below are repeated as they are after a lost connection: each one reads, or writes a row the
    same way twice. A trial's creation and a trial's end are the two that are not, and say why.
    """

    def __init__(self, url: str, outage: StorageOutage, **kwargs: Any) -> None:
        self.outage = outage
        super().__init__(url, engine_kwargs={"pool_pre_ping": True}, **kwargs)

    def _ride(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.outage.call(lambda: method(self, *args, **kwargs))

    # -- a creation whose answer was lost is found by its nonce ------------------------------------------

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        nonce = uuid.uuid4().hex
        template = _with_nonce(template_trial, nonce)
        return self.outage.call(
            lambda: RDBStorage._create_new_trial(self, study_id, template),
            check=lambda: self._created(nonce),
        )

    def _created(self, nonce: str) -> FrozenTrial | None:
        attrs = rdb_models().TrialSystemAttributeModel.__table__
        marked = sa.and_(attrs.c.key == NONCE, attrs.c.value_json == json.dumps(nonce))
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(attrs.c.trial_id).where(marked)).scalar()
        return None if found is None else RDBStorage.get_trial(self, found)

    # -- a trial's end repeated onto the end a failed try committed is that end --------------------------

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        tries = []

        def tell() -> bool:
            tries.append(1)
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except UpdateFinishedTrialError:
                if len(tries) == 1 or RDBStorage.get_trial(self, trial_id).state != state:
                    raise
                return True

        return self.outage.call(tell)

    # -- the calls repeated as they are ------------------------------------------------------------------

    def create_new_study(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.create_new_study, *args, **kwargs)

    def delete_study(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.delete_study, *args, **kwargs)

    def set_study_user_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.set_study_user_attr, *args, **kwargs)

    def set_study_system_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.set_study_system_attr, *args, **kwargs)

    def get_study_id_from_name(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.get_study_id_from_name, *args, **kwargs)

    def get_study_name_from_id(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.get_study_name_from_id, *args, **kwargs)

    def get_study_directions(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.get_study_directions, *args, **kwargs)

    def get_study_user_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.get_study_user_attrs, *args, **kwargs)

    def get_study_system_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.get_study_system_attrs, *args, **kwargs)

    def get_all_studies(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.get_all_studies, *args, **kwargs)

    def _set_trial_param(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage._set_trial_param, *args, **kwargs)

    def get_trial_id_from_study_id_trial_number(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.get_trial_id_from_study_id_trial_number, *args, **kwargs)

    def get_trial_number_from_id(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.get_trial_number_from_id, *args, **kwargs)

    def get_trial_param(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.get_trial_param, *args, **kwargs)

    def _get_best_trial_id(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage._get_best_trial_id, *args, **kwargs)

    def set_trial_intermediate_value(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.set_trial_intermediate_value, *args, **kwargs)

    def set_trial_user_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.set_trial_user_attr, *args, **kwargs)

    def set_trial_system_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.set_trial_system_attr, *args, **kwargs)

    def get_trial(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.get_trial, *args, **kwargs)

    def _get_trials(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage._get_trials, *args, **kwargs)

    def get_all_trials(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.get_all_trials, *args, **kwargs)

    def get_n_trials(self, *args: Any, **kwargs: Any) -> Any:
        return self._ride(RDBStorage.get_n_trials, *args, **kwargs)


def _with_nonce(template: FrozenTrial | None, nonce: str) -> FrozenTrial:
    """`template` (or a bare RUNNING trial, what Optuna creates without one) with the nonce attribute."""
    if template is None:
        return FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.datetime.now(),
            datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={NONCE: nonce},
            intermediate_values={}, trial_id=-1,
        )  # fmt: skip
    marked = copy.copy(template)
    marked.system_attrs = {**template.system_attrs, NONCE: nonce}
    return marked
