"""Model registry port: SageMaker Model Registry on AWS, SQLite locally.

A registered model version is a *model package* in its family's *group*
(``docllm-<stage>-<family>``), created ``PendingManualApproval`` and then set
``Approved`` or ``Rejected`` by the gate (or a person). Both registries announce
every creation and every approval change as a "SageMaker Model Package State
Change" event on the default bus: SageMaker does it itself on AWS, the local
registry does it as SageMaker would.

Each family has two aliases, ``champion`` (what the deployer serves) and
``previous_champion`` (what a rollback serves). :meth:`ModelRegistry.set_alias`
refuses to point either at a version that is not Approved; the check lives here,
in the port, so both adapters enforce it the same way (the registry's share of
"no path to deployment bypasses the gate").

>>> registry.register(spec).status                          # doctest: +SKIP
'PendingManualApproval'
>>> registry.set_status(spec.model_version, "Approved", "gate: every rule passed")  # doctest: +SKIP
>>> registry.promote("tiny-s3", spec.model_version)          # doctest: +SKIP
{'champion': '...', 'previous_champion': '...'}
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod

from docllm.registry.models import (
    ALIASES,
    APPROVAL_STATUSES,
    CHAMPION,
    PREVIOUS_CHAMPION,
    ApprovalStatus,
    ModelPackage,
    NotApprovedError,
    PackageSpec,
    RegistryError,
    clean_description,
)


class ModelRegistry(ABC):
    """Versions, approval statuses and aliases of the model families."""

    @abstractmethod
    def register(self, spec: PackageSpec) -> ModelPackage:
        """Register ``spec.model_version`` as ``PendingManualApproval`` (creating the family's group
        on first use) and return it. Idempotent by model version: registering a version again returns
        the package as it is (its status, metrics and lineage unchanged) and creates nothing."""

    @abstractmethod
    def get(self, model_version: str, *, family: str | None = None) -> ModelPackage:
        """The package of ``model_version``; :class:`~docllm.exceptions.NotFoundError` if none.

        ``family``, when the caller knows it, is a hint: the family's group is searched first (on
        SageMaker, which finds a version by describing packages, that spares describing the other
        groups'). The answer is the same with or without it, a wrong hint included."""

    @abstractmethod
    def get_by_arn(self, package_arn: str) -> ModelPackage:
        """The package at ``package_arn`` (as a state-change event names it);
        :class:`~docllm.exceptions.NotFoundError` if there is none, or it is not a docllm package of
        this stage."""

    @abstractmethod
    def list(self, family: str | None = None) -> builtins.list[ModelPackage]:
        """Every package (of ``family``), oldest first."""

    @abstractmethod
    def set_status(self, model_version: str, status: ApprovalStatus, description: str) -> ModelPackage:
        """Set the approval status and its description (stored on one line, see
        :func:`~docllm.registry.models.clean_description`) and announce the change.

        Idempotent: the same status and description again change nothing and announce nothing new
        (the local registry re-announces a change whose announcement was lost, see its module).
        :class:`~docllm.exceptions.NotFoundError` for an unknown version; :class:`RegistryError`
        for an unknown status or an empty description. A change clears a rollback marker
        (:meth:`mark_rolled_back`): a person's later decision replaces the rollback's."""

    @abstractmethod
    def mark_rolled_back(self, model_version: str, *, alarm: str, incident_id: str, description: str) -> ModelPackage:
        """Set ``model_version`` ``Rejected`` with ``description`` and the rollback marker (the alarm and
        its incident: :data:`~docllm.registry.metadata.ROLLED_BACK_ALARM`), and announce the change.

        The package then reads :attr:`~docllm.registry.models.ModelPackage.rolled_back` (``docllm models``
        shows ``RolledBack``) until a later :meth:`set_status` changes its status or description, which
        clears the marker. Idempotent like :meth:`set_status`; :class:`~docllm.exceptions.NotFoundError`
        for an unknown version."""

    @abstractmethod
    def aliases(self, family: str) -> dict[str, str]:
        """The family's aliases that are set: alias -> model version."""

    @abstractmethod
    def _write_alias(self, family: str, alias: str, model_version: str | None) -> None:
        """Store (``None``: remove) an alias; :meth:`set_alias` has checked it."""

    # -- shared rules ------------------------------------------------------------------------------
    def set_alias(self, family: str, alias: str, model_version: str | None) -> None:
        """Point ``alias`` of ``family`` at ``model_version`` (``None`` removes it).

        Raises
        ------
        NotApprovedError
            ``model_version`` is not Approved: no alias names an unapproved model.
        RegistryError
            An unknown alias, or a version of another family.
        NotFoundError
            An unknown version.
        """
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; the aliases are {', '.join(ALIASES)}")
        if model_version is not None:
            self._check_aliasable(family, alias, model_version)
        self._write_alias(family, alias, model_version)

    def _check_aliasable(self, family: str, alias: str, model_version: str) -> ModelPackage:
        package = self.get(model_version, family=family)
        if package.family != family:
            raise RegistryError(f"{model_version!r} is a {package.family!r} model, not a {family!r} one")
        if not package.approved:
            raise NotApprovedError(model_version, alias, package.status)
        return package

    @staticmethod
    def _checked_status(status: str, description: str) -> str:
        """``description`` as stored (one line), after checking ``status`` and that a reason is given."""
        if status not in APPROVAL_STATUSES:
            raise RegistryError(f"unknown approval status {status!r}; one of {', '.join(APPROVAL_STATUSES)}")
        text = clean_description(description)
        if not text:
            raise RegistryError("an approval status needs a description: who decided and why")
        return text

    def champion(self, family: str) -> ModelPackage | None:
        """The family's champion package, or ``None`` before the first promotion."""
        version = self.aliases(family).get(CHAMPION)
        return None if version is None else self.get(version, family=family)

    def promote(self, family: str, model_version: str) -> dict[str, str]:
        """Make ``model_version`` the champion and the champion it replaces the previous champion;
        return the aliases after.

        Idempotent and safe to retry after a crash between its two writes: promoting the champion
        again changes nothing. A replaced champion that is no longer Approved (a person rejected it
        since) does not become the previous champion; the previous one stays.

        Raises
        ------
        NotApprovedError
            ``model_version`` is not Approved; nothing is changed.
        """
        self._check_aliasable(family, CHAMPION, model_version)
        current = self.aliases(family).get(CHAMPION)
        if current == model_version:
            return self.aliases(family)
        if current is not None and self.get(current, family=family).approved:
            self.set_alias(family, PREVIOUS_CHAMPION, current)
        self.set_alias(family, CHAMPION, model_version)
        return self.aliases(family)
