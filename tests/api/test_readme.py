"""The README's tour answers what the server answers: each sample answer's fields, in the
server's order (a sample ending in ``...`` shows the first of them), with the server's
values (``"tr_…"`` stands for any id starting ``tr_``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

README = Path(__file__).parents[2] / "README.md"
MORE = "__more__"  # a sample's trailing `...`: the server answers more fields after these


def tour_samples() -> list[Any]:
    """The sample answers of the README's tour, in order, as JSON."""
    tour = README.read_text().split("## A five-minute tour", 1)[1].split("```sh", 1)[1]
    tour = tour.split("```", 1)[0]
    samples, current, depth = [], "", 0
    for line in tour.splitlines():
        text = line.removeprefix("#").strip()
        if not current and not re.match(r"(\d{3} )?\{", text):
            continue
        text = re.sub(r"^\d{3} ", "", text) if not current else text
        current += text
        depth += text.count("{") - text.count("}")
        if depth == 0:
            samples.append(json.loads(re.sub(r",\s*(\.\.\.|…)\s*\}", f',"{MORE}":true}}', current)))
            current = ""
    return samples


def matches(sample: Any, answer: Any, where: str = "") -> None:
    """Assert that ``answer`` is what ``sample`` shows."""
    if isinstance(sample, dict):
        assert isinstance(answer, dict), where
        shown = [key for key in sample if key != MORE]
        fields = list(answer)[: len(shown)] if sample.get(MORE) else list(answer)
        assert shown == fields, f"{where}: the README shows {shown}, the server {fields}"
        for key in shown:
            matches(sample[key], answer[key], f"{where}.{key}")
    elif isinstance(sample, str) and sample.endswith("…"):
        assert isinstance(answer, str) and answer.startswith(sample[:-1]), where
    else:
        assert sample == answer, f"{where}: the README shows {sample!r}, the server {answer!r}"


async def test_the_tours_sample_answers_are_the_servers(api: httpx.AsyncClient) -> None:
    grant = {"account_id": "user_2abc", "amount": 100, "reason": "welcome"}
    charge = {"account_id": "user_2abc", "amount": 10, "description": "chat_message"}
    hold = {"account_id": "user_2abc", "amount": 50, "expires_in": 600}
    answers = [
        await api.put("/v1/accounts/user_2abc"),
        await api.post("/v1/grants", json=grant),
        await api.post("/v1/charges", json=charge, headers={"Idempotency-Key": "chat-1"}),
        await api.post("/v1/charges", json={"account_id": "user_2abc", "amount": 1000}),
    ]
    held = (await api.post("/v1/holds", json=hold)).json()["id"]
    answers.append(await api.post(f"/v1/holds/{held}/capture", json={"amount": 30}))
    answers.append(await api.get("/v1/accounts/user_2abc/verify"))
    assert [answer.status_code for answer in answers] == [201, 201, 201, 402, 200, 200]
    samples = tour_samples()
    assert len(samples) == len(answers)
    for number, (sample, answer) in enumerate(zip(samples, answers, strict=True), 1):
        matches(sample, answer.json(), f"sample {number}")
