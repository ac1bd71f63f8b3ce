"""Bearer tokens on all three services as real processes, including the tokens each sends to its peers.

The stack runs with every token set, the splitter and the edge protecting reads too (the robot does not, to show
both settings), and every service logging at debug level, so that the last test can show that no token reaches
any log line even when the services log the most they can.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.reliability.harness import TINY_ONNX, Deployed, log_lines, register_split_deploy, start_service
from tests.support import CHELSEA, HTTP_TIMEOUT_S, TinySplit, robot_infer, upload_bundle
from tools.local_stack import LocalStack, ServiceProcess, free_port

SPLITTER_TOKEN = "splitter-" + secrets.token_hex(16)
ROBOT_TOKEN = "robot-" + secrets.token_hex(16)
EDGE_TOKEN = "edge-" + secrets.token_hex(16)
WRONG_EDGE_TOKEN = "wrong-edge-" + secrets.token_hex(16)
SECRETS = (SPLITTER_TOKEN, ROBOT_TOKEN, EDGE_TOKEN, WRONG_EDGE_TOKEN)
TOKENS = {"splitter": SPLITTER_TOKEN, "robot": ROBOT_TOKEN, "edge": EDGE_TOKEN}
SETTINGS = {"splitter": "SPLITTER_TOKEN", "robot": "ROBOT_TOKEN", "edge": "EDGE_TOKEN"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@dataclass
class SecuredStack:
    stack: LocalStack
    deployed: Deployed
    extra: list[ServiceProcess]

    def url(self, name: str) -> str:
        return {"splitter": self.stack.splitter_url, "robot": self.stack.robot_url, "edge": self.stack.edge_url}[name]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredStack]:
    env = {
        "SPLITTER_TOKEN": SPLITTER_TOKEN,
        "SPLITTER_PROTECT_READS": "true",
        "SPLITTER_ROBOT_TOKEN": ROBOT_TOKEN,
        "SPLITTER_EDGE_TOKEN": EDGE_TOKEN,
        "ROBOT_TOKEN": ROBOT_TOKEN,
        "ROBOT_EDGE_TOKEN": EDGE_TOKEN,
        "ROBOT_SPLITTER_TOKEN": SPLITTER_TOKEN,
        "EDGE_TOKEN": EDGE_TOKEN,
        "EDGE_PROTECT_READS": "true",
        "EDGE_SPLITTER_TOKEN": SPLITTER_TOKEN,
        "ROBOT_INTRA_OP_THREADS": "1",
        "EDGE_INTRA_OP_THREADS": "1",
    }
    env.update({f"{prefix}_LOG_LEVEL": "debug" for prefix in ("SPLITTER", "ROBOT", "EDGE")})
    local = LocalStack(
        data_dir=tmp_path_factory.mktemp("secured"),
        splitter_port=free_port(),
        robot_port=free_port(),
        edge_port=free_port(),
        extra_env=env,
    )
    with local:
        # Register, cut and deploy: the splitter calls edge and robot with their tokens, and they pull the
        # bundle from the splitter (which protects reads) with its token.
        deployed = register_split_deploy(local.splitter_url, bearer(SPLITTER_TOKEN))
        secured = SecuredStack(local, deployed, [])
        yield secured
        for service in secured.extra:
            service.stop()


def test_the_whole_chain_works_with_tokens(secured: SecuredStack) -> None:
    through_splitter = httpx.post(
        f"{secured.stack.splitter_url}/api/infer",
        files={"image": ("c.jpg", CHELSEA)},
        headers=bearer(SPLITTER_TOKEN),
        timeout=HTTP_TIMEOUT_S,
    )
    assert through_splitter.status_code == 200, through_splitter.text
    assert through_splitter.json()["split_id"] == secured.deployed.split_id
    on_robot = robot_infer(secured.stack.robot_url, headers=bearer(ROBOT_TOKEN))
    assert on_robot.status_code == 200, on_robot.text
    assert on_robot.json()["predictions"] == through_splitter.json()["predictions"]


def write_requests(deployed: Deployed) -> list[tuple[str, str, str, dict[str, object], int]]:
    """(service, method, path, httpx arguments, status with the right token): harmless even when let through."""
    garbage: dict[str, object] = {"files": {"bundle": ("b.zip", b"not a zip")}}
    return [
        (
            "splitter",
            "POST",
            "/api/models",
            {"files": {"file": ("t.onnx", TINY_ONNX)}, "data": {"input_shape": "x"}},
            400,
        ),
        ("splitter", "DELETE", "/api/models/0123456789abcdef", {}, 404),
        ("splitter", "POST", f"/api/models/{deployed.model_id}/splits", {"json": {"split_point": "nowhere"}}, 400),
        ("splitter", "POST", f"/api/splits/{'0' * 64}/deploy", {}, 404),
        ("splitter", "POST", "/api/infer", {"files": {"image": ("x.jpg", b"not an image")}}, 400),
        ("robot", "POST", "/api/deploy", {"json": {"split_id": "not-an-id"}}, 422),
        ("robot", "POST", "/api/bundles", garbage, 400),
        ("robot", "POST", "/api/infer", {"files": {"image": ("x.jpg", b"not an image")}}, 400),
        ("edge", "POST", "/api/deploy", {"json": {"split_id": "not-an-id"}}, 422),
        ("edge", "POST", "/api/bundles", garbage, 400),
        ("edge", "POST", "/api/infer", {"content": b"not a frame"}, 400),
    ]


def test_writes_need_exactly_the_token(secured: SecuredStack) -> None:
    for service, method, path, arguments, allowed_status in write_requests(secured.deployed):
        token = TOKENS[service]
        url = secured.url(service) + path
        attempts = {
            "no header": {},
            "another service's token": bearer(SPLITTER_TOKEN if service != "splitter" else ROBOT_TOKEN),
            "a prefix of the token": bearer(token[:-1]),
            "the token and more": bearer(token + "0"),
            "another scheme": {"authorization": f"Basic {token}"},
            "the token alone": {"authorization": token},
        }
        for attempt, headers in attempts.items():
            response = httpx.request(method, url, headers=headers, timeout=HTTP_TIMEOUT_S, **arguments)  # type: ignore[arg-type]
            assert response.status_code == 401, (service, path, attempt, response.text)
            assert response.json()["error"] == "unauthorized"
            assert SETTINGS[service] in response.json()["detail"]
            assert not any(secret in response.text for secret in SECRETS)
        allowed = httpx.request(method, url, headers=bearer(token), timeout=HTTP_TIMEOUT_S, **arguments)  # type: ignore[arg-type]
        assert allowed.status_code == allowed_status, (service, path, allowed.text)


def test_a_refused_delete_deletes_nothing(secured: SecuredStack) -> None:
    model = f"{secured.stack.splitter_url}/api/models/{secured.deployed.model_id}"
    assert httpx.delete(model, timeout=HTTP_TIMEOUT_S).status_code == 401
    assert httpx.get(model, headers=bearer(SPLITTER_TOKEN), timeout=HTTP_TIMEOUT_S).status_code == 200


@pytest.mark.parametrize(
    ("service", "path", "protected"),
    [
        ("splitter", "/api/models", True),
        ("splitter", "/api/models/{model_id}", True),
        ("splitter", "/api/splits/{split_id}", True),
        ("splitter", "/api/splits/{split_id}/tail.onnx", True),
        ("splitter", "/api/splits/{split_id}/bundle.zip", True),
        ("splitter", "/metrics", True),
        ("splitter", "/health", False),
        ("robot", "/api/splits", False),
        ("robot", "/metrics", False),
        ("robot", "/health", False),
        ("edge", "/api/splits", True),
        ("edge", "/metrics", True),
        ("edge", "/health", False),
    ],
)
def test_reads_follow_protect_reads_and_health_is_always_open(
    secured: SecuredStack, service: str, path: str, protected: bool
) -> None:
    url = secured.url(service) + path.format(model_id=secured.deployed.model_id, split_id=secured.deployed.split_id)
    anonymous = httpx.get(url, timeout=HTTP_TIMEOUT_S)
    assert anonymous.status_code == (401 if protected else 200), anonymous.text
    with_token = httpx.get(url, headers=bearer(TOKENS[service]), timeout=HTTP_TIMEOUT_S)
    assert with_token.status_code == 200, with_token.text


def test_the_robot_with_a_wrong_edge_token_says_the_edge_refused(
    secured: SecuredStack, tmp_path: Path, tiny_split: TinySplit
) -> None:
    robot = start_service(
        "robot_inference",
        "ROBOT",
        secured.stack.data_dir / "misconfigured-robot",
        name="misconfigured-robot",
        edge_url=secured.stack.edge_url,
        token=ROBOT_TOKEN,
        edge_token=WRONG_EDGE_TOKEN,
        log_level="debug",
    )
    secured.extra.append(robot)
    upload_bundle(robot, tiny_split.zip_bytes, bearer(ROBOT_TOKEN))
    edge_bundle = httpx.post(
        f"{secured.stack.edge_url}/api/bundles",
        files={"bundle": ("b.zip", tiny_split.zip_bytes)},
        headers=bearer(EDGE_TOKEN),
        timeout=HTTP_TIMEOUT_S,
    )
    assert edge_bundle.status_code == 200, edge_bundle.text
    response = robot_infer(robot.url, headers=bearer(ROBOT_TOKEN))
    assert response.status_code == 502, response.text
    assert "the edge refused" in response.json()["detail"] and "EDGE_TOKEN" in response.json()["detail"]
    assert not any(secret in response.text for secret in SECRETS)


# Background registration and sample routes (model_splitter/api/jobs.py), checked on their own below as well.
JOB_ROUTES = [("POST", "/api/model-jobs"), ("GET", "/api/model-jobs/{job_id}"), ("GET", "/api/samples")]
PATH_VALUES = {
    "model_id": "0123456789abcdef",
    "split_id": "0" * 64,
    "job_id": "0" * 32,
    "name": "m",
    "version": "1",
    "part": "head",
}


def schema_operations(url: str) -> list[tuple[str, str]]:
    paths = httpx.get(f"{url}/openapi.json", timeout=HTTP_TIMEOUT_S).json()["paths"]
    return [(method.upper(), path) for path, methods in paths.items() for method in methods]


@pytest.mark.parametrize("service", ["splitter", "robot", "edge"])
def test_every_operation_in_the_schema_is_guarded(secured: SecuredStack, service: str) -> None:
    """New endpoints are covered too: every write needs the token, and every read where reads are protected."""
    protects_reads = service != "robot"
    checked = []
    for method, path in schema_operations(secured.url(service)):
        # open for orchestrators (KServe probes the protocol's own); they show no data
        if path in ("/health", "/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"):
            continue
        if method == "GET" and not protects_reads:
            continue
        url = secured.url(service) + path.format(**PATH_VALUES)
        response = httpx.request(method, url, timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 401, (method, path, response.text)
        checked.append(f"{method} {path}")
    assert len(checked) >= 4, checked


@pytest.mark.parametrize(("method", "path"), JOB_ROUTES)
def test_background_registration_routes_are_guarded(secured: SecuredStack, method: str, path: str) -> None:
    # The POST without a file or an arch is refused before any work either way: 401 when guarded, 400 when not.
    url = secured.stack.splitter_url + path.format(**PATH_VALUES)
    response = httpx.request(method, url, timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 401, response.text


@pytest.mark.parametrize("page", ["/", "/infer", "/models/{model_id}"])
def test_web_pages_do_not_show_models_when_reads_are_protected(secured: SecuredStack, page: str) -> None:
    url = secured.stack.splitter_url + page.format(model_id=secured.deployed.model_id)
    response = httpx.get(url, timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 401
    assert 'name="token"' in response.text
    # The sign-in form remembers where to return to (the page's own path); nothing else may name the model.
    shown = response.text.replace(page.format(model_id=secured.deployed.model_id), "")
    assert secured.deployed.model_id not in shown


def test_signing_in_to_the_web_ui_opens_pages_and_api_to_that_browser(secured: SecuredStack) -> None:
    with httpx.Client(base_url=secured.stack.splitter_url, timeout=HTTP_TIMEOUT_S) as browser:
        wrong = browser.post("/login", data={"token": "guess", "next": "/infer"})
        assert wrong.status_code == 401 and "not the token" in wrong.text
        assert "splitbot_token" not in browser.cookies
        signed_in = browser.post("/login", data={"token": SPLITTER_TOKEN, "next": "/infer"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/infer"
        assert "samesite=strict" in signed_in.headers["set-cookie"].lower()
        assert "httponly" in signed_in.headers["set-cookie"].lower()
        assert secured.deployed.model_id in browser.get("/").text
        assert browser.get(f"/api/models/{secured.deployed.model_id}").status_code == 200
        browser.post("/logout")
        assert browser.get("/api/models").status_code == 401


@pytest.mark.parametrize("target", ["//elsewhere.example/", "https://elsewhere.example/", "/\\elsewhere"])
def test_sign_in_never_redirects_off_the_server(secured: SecuredStack, target: str) -> None:
    response = httpx.post(
        f"{secured.stack.splitter_url}/login", data={"token": SPLITTER_TOKEN, "next": target}, timeout=HTTP_TIMEOUT_S
    )
    assert response.status_code == 303 and response.headers["location"] == "/"


@pytest.mark.parametrize("service", ["splitter", "edge"])
def test_health_tells_strangers_only_that_the_service_is_up(secured: SecuredStack, service: str) -> None:
    url = secured.url(service) + "/health"
    anonymous = httpx.get(url, timeout=HTTP_TIMEOUT_S)
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ok", "service": service}
    assert secured.deployed.split_id not in anonymous.text and secured.deployed.model_id not in anonymous.text
    signed = httpx.get(url, headers=bearer(TOKENS[service]), timeout=HTTP_TIMEOUT_S).text
    assert secured.deployed.split_id in signed  # the splitter shows robot and edge, the edge its deployments


def test_the_sign_in_cookie_is_a_session_that_expires_and_ends_at_sign_out(secured: SecuredStack) -> None:
    with httpx.Client(base_url=secured.stack.splitter_url, timeout=HTTP_TIMEOUT_S) as browser:
        signed_in = browser.post("/login", data={"token": SPLITTER_TOKEN, "next": "/"})
        cookie = browser.cookies["splitbot_token"]
        header = signed_in.headers["set-cookie"].lower()
        assert SPLITTER_TOKEN not in header and SPLITTER_TOKEN not in cookie
        assert "max-age=43200" in header and "secure" not in header  # plain HTTP here
        assert browser.get("/api/models").status_code == 200
        browser.post("/logout")
    kept = httpx.get(
        f"{secured.stack.splitter_url}/api/models", cookies={"splitbot_token": cookie}, timeout=HTTP_TIMEOUT_S
    )
    assert kept.status_code == 401 and "ended" in kept.json()["detail"]
    forged = cookie.rsplit(".", 1)[0] + "." + "0" * 64
    refused = httpx.get(
        f"{secured.stack.splitter_url}/api/models", cookies={"splitbot_token": forged}, timeout=HTTP_TIMEOUT_S
    )
    assert refused.status_code == 401


def test_behind_a_tls_proxy_the_cookie_is_secure(secured: SecuredStack) -> None:
    response = httpx.post(
        f"{secured.stack.splitter_url}/login",
        data={"token": SPLITTER_TOKEN, "next": "/"},
        headers={"x-forwarded-proto": "https"},  # uvicorn trusts it from loopback, where such a proxy runs
        timeout=HTTP_TIMEOUT_S,
    )
    assert response.status_code == 303 and "; secure" in response.headers["set-cookie"].lower()


@pytest.mark.parametrize(
    "how", ["basic", "token-scheme", "bare", "query"], ids=["Basic", "Token", "bare value", "?token="]
)
def test_credentials_in_any_scheme_stay_out_of_the_logs(secured: SecuredStack, how: str) -> None:
    """Sent to every service and over the edge's WebSocket handshake; the last test reads every log line."""
    for service in ("splitter", "robot", "edge"):
        token = TOKENS[service]
        headers = {
            "basic": {"authorization": f"Basic {token}"},
            "token-scheme": {"authorization": f"Token {token}"},
            "bare": {"authorization": token},
            "query": {},
        }[how]
        params = {"token": token} if how == "query" else {}
        path = "/api/models" if service == "splitter" else "/api/splits"
        response = httpx.get(f"{secured.url(service)}{path}", headers=headers, params=params, timeout=30)
        assert response.status_code in (200, 401)
    handshake_headers = {"basic": f"Basic {EDGE_TOKEN}", "token-scheme": f"Token {EDGE_TOKEN}", "bare": EDGE_TOKEN}
    ws_url = secured.stack.edge_url.replace("http", "ws") + "/api/frames"
    if how == "query":
        ws_url += f"?token={EDGE_TOKEN}"
    with pytest.raises(InvalidStatus):
        connect(ws_url, additional_headers={"authorization": handshake_headers.get(how, "x")}, open_timeout=30)


def test_no_token_in_any_log_line(secured: SecuredStack) -> None:
    """Last in this file: every request above, at debug level, in the logs of all four processes."""
    services = [*secured.stack.services, *secured.extra]
    total = 0
    for service in services:
        lines = log_lines(service)
        assert lines, f"{service.name} wrote no log"
        total += len(lines)
        for number, line in enumerate(lines, 1):
            for secret in SECRETS:
                assert secret not in line, f"{service.log_path}:{number} holds a token: {line[:300]}"
    print(f"\nno token in {total} log lines of {len(services)} services")
