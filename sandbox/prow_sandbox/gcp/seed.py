"""The world the fake starts with: projects, principals and their project-level roles.

Two projects mirror a real onboarding: the Prow instance's project (control-plane service
accounts, the kubeconfig rotation job, External Secrets, the GSM secrets) and a team's
build project (GKE cluster, results bucket, job service account). A third project belongs
to someone else, so "not yours" paths can be tested. Only the operators hold roles:
everything else onboarding grants, it must grant itself.

The operator is a service account, and its key file is the sandbox's
GOOGLE_APPLICATION_CREDENTIALS: google-auth honours ``token_uri`` in service-account key
files but always sends ``authorized_user`` files to oauth2.googleapis.com, so only a key
file works against the fake unmodified. The human operator (authorized_user) exists too,
for clients that set the token URI themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

PROW_PROJECT = "prow-sandbox-prow"
BUILD_PROJECT = "prow-sandbox-build"
OTHER_PROJECT = "prow-sandbox-other"
OPERATOR_USER = "operator@prow-sandbox.test"
OPERATOR = f"sandbox-operator@{BUILD_PROJECT}.iam.gserviceaccount.com"


@dataclass(frozen=True)
class SeedProject:
    project_id: str
    number: str
    name: str


@dataclass(frozen=True)
class SeedAccount:
    project_id: str
    account_id: str
    display_name: str

    @property
    def email(self) -> str:
        return f"{self.account_id}@{self.project_id}.iam.gserviceaccount.com"


PROJECTS = (
    SeedProject(PROW_PROJECT, "100000000001", "Prow sandbox: Prow instance"),
    SeedProject(BUILD_PROJECT, "100000000002", "Prow sandbox: team build project"),
    SeedProject(OTHER_PROJECT, "100000000003", "Prow sandbox: someone else's project"),
)

# Human users; each gets an authorized_user credentials file (gcloud ADC layout).
USERS = (OPERATOR_USER, "someone-else@prow-sandbox.test")

SERVICE_ACCOUNTS = (
    # Prow's control plane (CONTROL_PLANE_SA): need objectAdmin on results buckets and,
    # for the exec-plugin model, container.developer on build projects.
    SeedAccount(PROW_PROJECT, "prow-crier", "Prow crier"),
    SeedAccount(PROW_PROJECT, "prow-deck", "Prow deck"),
    SeedAccount(PROW_PROJECT, "prow-controller-manager", "Prow controller manager"),
    # The kubeconfig rotation job (gencred-refresher upstream): container.admin on build
    # projects, versions.add on the GSM secret.
    SeedAccount(PROW_PROJECT, "gencred-refresher", "Build-cluster kubeconfig rotation"),
    # External Secrets Operator: secretAccessor on the GSM secret.
    SeedAccount(PROW_PROJECT, "external-secrets", "External Secrets Operator"),
    # The operator: owns the Prow and build projects; GOOGLE_APPLICATION_CREDENTIALS.
    SeedAccount(BUILD_PROJECT, "sandbox-operator", "Sandbox operator"),
)

CRIER, DECK, CONTROLLER_MANAGER, ROTATOR, EXTERNAL_SECRETS, _ = (
    a.email for a in SERVICE_ACCOUNTS)

# (project, role, member): the only project-level grants at start.
BINDINGS = (
    (PROW_PROJECT, "roles/owner", f"serviceAccount:{OPERATOR}"),
    (BUILD_PROJECT, "roles/owner", f"serviceAccount:{OPERATOR}"),
    (PROW_PROJECT, "roles/owner", f"user:{OPERATOR_USER}"),
    (BUILD_PROJECT, "roles/owner", f"user:{OPERATOR_USER}"),
    (OTHER_PROJECT, "roles/owner", "user:someone-else@prow-sandbox.test"),
)
