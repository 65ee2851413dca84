"""The review room's JSON API and pages over a real gated batch (the demo shoot at 320x180), through the ASGI app
itself: reads, decisions as the CLI records them, conflicts, bad input, media limits, escaping and the token."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from voidflow.deployments.review import COOKIE, ReviewConfig, create_app
from voidflow.flows.batch import BatchResult, run_batch
from voidflow.flows.params import BatchRequest, MaskOptions
from voidflow.infra.database import ensure_schema
from voidflow.infra.settings import Settings
from voidflow.tasks.ledger import Ledger

pytestmark = pytest.mark.usefixtures("ray_cluster")


@dataclasses.dataclass
class Gated:
    result: BatchResult
    db_url: str
    out: Path
    settings: Settings


@pytest.fixture(scope="module")
def gated(small_demo: Any, tmp_path_factory: pytest.TempPathFactory) -> Gated:
    folder = tmp_path_factory.mktemp("review")
    db_url = f"sqlite:///{folder / 'ledger.db'}"
    ensure_schema(db_url)
    request = BatchRequest(
        edit=small_demo.edit,
        sidecar=small_demo.sidecar,
        out_dir=folder / "out",
        db_url=db_url,
        masks=MaskOptions(gate=True),
    )
    result = run_batch(request)
    settings = dataclasses.replace(Settings.from_env(), db_url=db_url, home=folder / "home", user="anna")
    return Gated(result, db_url, folder / "out", settings)


class Client:
    """Synchronous calls into the ASGI app (httpx's ASGI transport), as a browser or a script would make them."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1") -> None:
        self.app = create_app(ReviewConfig(settings, host=host))

    def __call__(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            base = kwargs.pop("base", "http://127.0.0.1")
            async with httpx.AsyncClient(transport=transport, base_url=base) as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(go())


@pytest.fixture
def client(gated: Gated) -> Iterator[Client]:
    yield Client(gated.settings)


def test_batches_list_their_shots_and_states(gated: Gated, client: Client) -> None:
    answer = client("GET", "/api/batches")
    assert answer.status_code == 200
    (batch,) = [b for b in answer.json() if b["batch_id"] == gated.result.batch_id]
    assert batch["state"] == "awaiting_review"
    states = {shot["name"]: shot["state"] for shot in batch["shots"]}
    assert states.pop("slate") == "skipped" and set(states.values()) == {"awaiting_review"}
    assert {"sh010", "sh020", "sh030"} <= set(states)


def test_the_shot_api_gives_the_player_its_facts_and_media(gated: Gated, client: Client) -> None:
    page = client("GET", f"/api/batches/{gated.result.batch_id[:8]}/shots/sh010").json()
    assert (page["width"], page["height"]) == (320, 180) and page["frames"] > page["head"] + page["tail"]
    assert page["mask"]["awaiting"] is True and page["mask"]["decisions"] == []
    proxy = page["mask"]["plate_proxy"]
    assert proxy["frames"] == page["frames"] and proxy["url"].startswith("/media/")
    movie = client("GET", proxy["url"], headers={"Range": "bytes=0-99"})
    assert movie.status_code == 206 and len(movie.content) == 100  # browsers seek by byte ranges
    stage, entries = page["provenance"][0]  # provenance: the parameters the mask stage recorded
    assert stage == "mask" and dict(entries)["masker"] == "matte"


def test_unknown_batch_shot_version_and_job_are_404_with_one_line(gated: Gated, client: Client) -> None:
    for method, url, body in (
        ("GET", "/api/batches/ffffffff", None),
        ("GET", f"/api/batches/{gated.result.batch_id}/shots/nope", None),
        (
            "POST",
            f"/api/batches/{gated.result.batch_id}/shots/nope/mask/decision",
            {"decision": "approved", "reviewer": "a"},
        ),
        ("POST", "/api/shots/sh010/versions/v009/decision", {"decision": "approved", "reviewer": "a"}),
        ("GET", "/api/jobs/abc", None),
        ("GET", "/media/999999", None),
    ):
        answer = client(method, url, json=body) if body else client(method, url)
        assert answer.status_code == 404, (url, answer.text)
        assert set(answer.json()) == {"error"} and "\n" not in answer.json()["error"]


def test_a_decision_is_recorded_as_the_cli_records_it_and_a_second_one_is_409(gated: Gated, client: Client) -> None:
    url = f"/api/batches/{gated.result.batch_id}/shots/sh020/mask/decision"
    first = client("POST", url, json={"decision": "rejected", "reviewer": "anna", "note": "<b>shadow</b> missing"})
    assert first.status_code == 200, first.text
    second = client("POST", url, json={"decision": "approved", "reviewer": "ben"})
    assert second.status_code == 409 and second.json() == {
        "error": "shot 'sh020': its mask was already rejected by anna"
    }
    ledger = Ledger(gated.db_url)
    page = client("GET", f"/api/batches/{gated.result.batch_id}/shots/sh020").json()
    review = ledger.review(page["mask"]["key"])
    assert review is not None and (review.decision, review.reviewer, review.note) == (
        "rejected",
        "anna",
        "<b>shadow</b> missing",
    )
    html = client("GET", f"/batches/{gated.result.batch_id}/shots/sh020").text
    assert "&lt;b&gt;shadow&lt;/b&gt; missing" in html and "<b>shadow</b>" not in html  # nothing is trusted as HTML
    report = (gated.out / "report.html").read_text()
    assert "rejected" in report and "sh020" in report  # the static report was refreshed by the decision


def test_two_reviewers_at_once_one_wins_and_the_other_is_told(gated: Gated) -> None:
    url = f"/api/batches/{gated.result.batch_id}/shots/sh030/mask/decision"
    app = create_app(ReviewConfig(gated.settings))

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            return list(
                await asyncio.gather(
                    *(client.post(url, json={"decision": "approved", "reviewer": who}) for who in ("cleo", "dan"))
                )
            )

    answers = asyncio.run(race())
    assert sorted(a.status_code for a in answers) == [200, 409]
    page = Client(gated.settings)("GET", f"/api/batches/{gated.result.batch_id}/shots/sh030").json()
    assert len(page["mask"]["decisions"]) == 1  # nothing doubled


def test_malformed_prompts_and_decisions_are_422_naming_the_field(gated: Gated, client: Client) -> None:
    url = f"/api/batches/{gated.result.batch_id}/shots/sh010/prompts"
    cases = [
        ({"points": [{"frame": 0, "x": "left", "y": 3}], "reviewer": "a"}, "points.0.x"),
        ({"boxes": [{"frame": 0, "box": [50, 50, 10, 10]}], "reviewer": "a"}, "boxes.0.box"),
        ({"points": [{"frame": 0, "x": 5000, "y": 3}], "reviewer": "a"}, "points.0.x"),
        ({"points": [{"frame": 999, "x": 5, "y": 3}], "reviewer": "a"}, "points.0.frame"),
        ({"points": [], "reviewer": ""}, "reviewer"),
    ]
    for body, field in cases:
        answer = client("POST", url, json=body)
        assert answer.status_code == 422, answer.text
        assert f"field '{field}'" in answer.json()["error"]
    bad = client(
        "POST",
        f"/api/batches/{gated.result.batch_id}/shots/sh010/mask/decision",
        json={"decision": "maybe", "reviewer": "a"},
    )
    assert bad.status_code == 422 and "field 'decision'" in bad.json()["error"]
    form = client(
        "POST", f"/api/batches/{gated.result.batch_id}/shots/sh010/mask/decision", data={"decision": "approved"}
    )
    assert form.status_code == 415  # no cross-site form posts
    assert not list(gated.out.glob("review/*.yaml"))  # nothing was written for refused prompts


def test_only_review_media_inside_the_batch_folder_is_served(gated: Gated, client: Client) -> None:
    ledger = Ledger(gated.db_url)
    (batch,) = ledger.batches(gated.result.batch_id)
    artifacts = {a.kind: a for row in batch.shots for run in row.stage_runs for a in run.artifacts}
    assert client("GET", f"/media/{artifacts['overlay'].id}").status_code == 200
    assert (
        client("GET", f"/media/{artifacts['quadmask'].id}").status_code == 404
    )  # masks and plates are not review media
    roots = dataclasses.replace(gated.settings, allowed_roots=(str(gated.out.parent / "elsewhere"),))
    assert Client(roots)("GET", f"/media/{artifacts['overlay'].id}").status_code == 404


def test_a_token_guards_every_request_and_other_hosts_are_refused(gated: Gated) -> None:
    open_room = Client(gated.settings)
    assert open_room("GET", "/api/batches", base="http://evil.example").status_code == 400  # DNS rebinding
    guarded = Client(dataclasses.replace(gated.settings, review_token="s3cret-token"), host="0.0.0.0")
    assert guarded("GET", "/api/batches", base="http://review.studio.lan").status_code == 401
    assert guarded("GET", "/api/batches", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    login = guarded("GET", "/?token=s3cret-token")
    assert login.status_code == 303 and "token" not in login.headers["location"]
    assert login.cookies.get(COOKIE) == "s3cret-token"
    assert guarded("GET", "/?token=wrong").status_code == 401


def test_the_static_report_is_the_overview_page_without_live_parts(gated: Gated, client: Client) -> None:
    report = (gated.out / "report.html").read_text()
    assert 'data-page="overview"' in report and 'data-static="yes"' in report
    assert "<video" in report  # preview movies of shots awaiting review
    for card in json.loads(report.split('id="page-data">', 1)[1].split("</script>", 1)[0])["cards"]:
        if card["picture"]:
            assert (gated.out / card["picture"]["url"]).is_file()  # linked relative to the report
    live = client("GET", f"/batches/{gated.result.batch_id}").text
    assert 'data-static="no"' in live and 'src="/static/review.js"' in live
