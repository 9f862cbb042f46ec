"""A small Label Studio 1.23 API client (what push, simulate, pull and the team tools need).

It is a session of mmnerd's HTTP layer (:mod:`mmnerd.http`): only reads (GET, HEAD)
are sent again after a 429/5xx answer or a broken connection (``Retry-After``
honoured); POSTs and PATCHes are sent once and the caller makes reruns safe (push
lists the post ids already in the project first).  mmnerd does not use
``label-studio-sdk`` (see docs/architecture.md): the SDK retries POSTs on
5xx/408/409/429 by default, so a bulk import that timed out on our side but
finished on the server would be sent again and duplicate tasks.

Errors become :class:`~mmnerd.errors.LabelStudioError` with one line naming the
call and the server's answer; the token never appears in them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from mmnerd.config import PipelineConfig
from mmnerd.errors import LabelStudioError

T = TypeVar("T")
R = TypeVar("R")


class LSClient:
    """Authenticated session against one Label Studio server (legacy ``Token`` auth)."""

    def __init__(self, url: str, token: str, timeout: float = 300.0, reconnect: float = 0.0):
        """``reconnect``: seconds an idempotent GET keeps retrying while the server is
        unreachable (a restart mid-pull); 0 fails at once (after urllib3's 3 quick retries)."""
        from mmnerd.http import polite_retry, session

        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.reconnect = reconnect
        # only reads are sent twice: imports and annotations are not idempotent
        retry = polite_retry(3, backoff=0.5, max_wait=60.0, methods=("GET", "HEAD"))
        self.session = session(
            retry, timeout=timeout, headers={"Authorization": f"Token {token}"}, quick_ack=True
        )

    def __repr__(self) -> str:
        return f"LSClient({self.url!r})"

    @classmethod
    def from_config(cls, config: PipelineConfig, start: bool = True) -> LSClient:
        from mmnerd.labelstudio import server

        info = server.connect(config, start=start)
        return cls(info.url, info.token, reconnect=config.labelstudio.reconnect_timeout)

    def clone(self) -> LSClient:
        """A client with its own session (one per thread)."""
        return LSClient(self.url, self._token, self.timeout, self.reconnect)

    def map(self, fn: Callable[[LSClient, T], R], items: Iterable[T], workers: int = 4) -> list[R]:
        """``[fn(client, item) ...]`` over a few threads, each with its own session, in order.

        Label Studio answers single-object writes (annotations, PATCHes) in ~0.1-0.3 s of
        server CPU each; a handful of concurrent requests keeps it busy.  The first error
        is raised after the running calls finish.
        """
        items = list(items)
        if workers <= 1 or len(items) <= 1:
            return [fn(self, it) for it in items]
        import threading
        from concurrent.futures import ThreadPoolExecutor

        local = threading.local()

        def call(it: T) -> R:
            c = getattr(local, "client", None)
            if c is None:
                c = local.client = self.clone()
            return fn(c, it)

        with ThreadPoolExecutor(max_workers=workers) as ex:
            return list(ex.map(call, items))

    # --- plumbing ------------------------------------------------------------------
    def request(self, method: str, path: str, ok: tuple[int, ...] = (), **kw: Any) -> Any:
        import requests

        deadline: float | None = None
        while True:
            try:
                r = self.session.request(method, f"{self.url}{path}", **kw)
                break
            except requests.RequestException as e:
                unreachable = isinstance(e, requests.ConnectionError)
                if not (unreachable and method in ("GET", "HEAD") and self.reconnect > 0):
                    raise LabelStudioError(
                        f"{method} {path}: cannot reach Label Studio at {self.url} "
                        f"({type(e).__name__})"
                    ) from None
                deadline = self._wait_for_server(method, path, deadline, type(e).__name__)
        if r.status_code in ok:
            return None
        if r.status_code >= 400:
            detail = r.text[:300].replace(self._token, "***").replace("\n", " ")
            if r.status_code == 401:
                detail = "token refused (is this our server? see labelstudio.data_dir)"
            raise LabelStudioError(f"{method} {path}: HTTP {r.status_code}: {detail}")
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            raise LabelStudioError(f"{method} {path}: answer is not JSON") from None

    def _wait_for_server(self, method: str, path: str, deadline: float | None, error: str) -> float:
        """Sleep before retrying a GET on a server that went away; raise once past the deadline."""
        import sys
        import time

        now = time.monotonic()
        if deadline is None:
            deadline = now + self.reconnect
            print(
                f"Label Studio at {self.url} is unreachable ({error}); retrying {method} {path} "
                f"for up to {self.reconnect:.0f} s (labelstudio.reconnect_timeout)",
                file=sys.stderr,
            )
        elif now >= deadline:
            raise LabelStudioError(
                f"{method} {path}: Label Studio at {self.url} unreachable for "
                f"{self.reconnect:.0f} s ({error})"
            )
        time.sleep(1.0)
        return deadline

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, payload: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, json=payload, **kw)

    def patch(self, path: str, payload: Any, **kw: Any) -> Any:
        return self.request("PATCH", path, json=payload, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, ok=(404,), **kw)

    # --- users ---------------------------------------------------------------------
    def whoami(self) -> dict:
        return self.get("/api/current-user/whoami")

    def users(self) -> list[dict]:
        data = self.get("/api/users/", params={"page_size": 10000})
        return data["results"] if isinstance(data, dict) and "results" in data else data

    def ensure_user(self, email: str, first_name: str = "", last_name: str = "") -> int:
        """Id of the user with ``email``, created (as admin, without password) if missing."""
        for u in self.users():
            if u.get("email") == email:
                return int(u["id"])
        u = self.post(
            "/api/users/",
            {
                "email": email,
                "username": email,
                "first_name": first_name,
                "last_name": last_name,
            },
        )
        return int(u["id"])

    # --- projects ------------------------------------------------------------------
    def projects(self, title: str = "") -> list[dict]:
        """Every project (or those whose title contains ``title``, case-insensitive)."""
        out: list[dict] = []
        page = 1
        where = {"title": title} if title else {}
        while True:
            data = self.get("/api/projects", params={"page": page, "page_size": 100, **where})
            if isinstance(data, list):
                return data
            out.extend(data.get("results", []))
            if not data.get("next"):
                return out
            page += 1

    def find_project(self, title: str) -> dict | None:
        """The oldest project with exactly this title (titles are our key), or None."""
        found = [p for p in self.projects(title) if p.get("title") == title]
        return min(found, key=lambda p: p["id"]) if found else None

    def ensure_project(
        self,
        title: str,
        label_config: str,
        instructions: str = "",
        maximum_annotations: int = 1,
        description: str = "",
    ) -> dict:
        """Create the project (the answer then has ``"created": True``), or bring an
        existing one's settings up to date."""
        settings = {
            "label_config": label_config.strip(),  # stored without the final newline
            "expert_instruction": instructions,
            "show_instruction": bool(instructions),
            "maximum_annotations": maximum_annotations,
            "overlap_cohort_percentage": 100,
            "show_skip_button": True,
            "enable_empty_annotation": True,
            "description": description,
        }
        proj = self.find_project(title)
        if proj is None:
            return {**self.post("/api/projects", {"title": title, **settings}), "created": True}
        changed = {k: v for k, v in settings.items() if proj.get(k) != v}
        if changed:
            proj = self.patch(f"/api/projects/{proj['id']}", changed)
        return proj

    def project(self, project_id: int) -> dict:
        return self.get(f"/api/projects/{project_id}")

    def ensure_local_storage(
        self, project_id: int, path: Path, title: str = "images", new_project: bool = False
    ) -> int:
        """A Local Files storage covering ``path``, so its files are served to the page
        (``new_project``: the project was created just now, so it has none to list)."""
        path = Path(path).resolve()
        found = []
        if not new_project:
            found = self.get("/api/storages/localfiles", params={"project": project_id}) or []
        for s in found:
            if Path(s.get("path", "")).resolve() == path:
                return int(s["id"])
        s = self.post(
            "/api/storages/localfiles",
            {
                "project": project_id,
                "path": str(path),
                "title": title,
                "use_blob_urls": False,
                "regex_filter": "",
            },
        )
        return int(s["id"])

    # --- tasks -----------------------------------------------------------------------
    def iter_tasks(
        self,
        project_id: int,
        page_size: int = 1000,
        include: str | None = None,
        ids: list[int] | None = None,
        annotations: bool = False,
    ) -> Iterator[dict]:
        """Tasks of a project, page by page (the Data Manager task list).

        ``include`` names the fields to return (also inside annotations), which
        makes the listing several times faster; ``ids`` restricts it to those
        tasks; ``annotations`` adds each task's annotations.
        """
        params: dict[str, Any] = {"project": project_id, "page_size": page_size}
        if include:
            params["include"] = include
        if annotations:
            params["fields"] = "all"
        if ids is not None:
            params["query"] = json.dumps({"selectedItems": {"all": False, "included": ids}})
        page = 1
        seen = 0
        while True:
            # 1.23 answers 404 for a page past the end
            data = self.request("GET", "/api/tasks", ok=(404,), params={**params, "page": page})
            if data is None:
                return
            tasks = data.get("tasks", data.get("results", []))
            yield from tasks
            seen += len(tasks)
            total = data.get("total", data.get("count", 0))
            if not tasks or seen >= total:
                return
            page += 1

    def tasks_with_annotations(
        self, project_id: int, ids: list[int], chunk: int = 500
    ) -> Iterator[dict]:
        """``{id, updated_at, annotations: [...]}`` for the given task ids, in chunks."""
        include = ",".join(
            (
                "id",
                "updated_at",
                "total_annotations",
                "cancelled_annotations",
                "annotations",
                "result",
                "completed_by",
                "was_cancelled",
                "lead_time",
                "created_at",
                "ground_truth",
            )
        )
        for k in range(0, len(ids), chunk):
            part = ids[k : k + chunk]
            yield from self.iter_tasks(
                project_id, page_size=len(part), include=include, ids=part, annotations=True
            )

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """One bulk import (sent once, never retried); returns the new task ids."""
        return self.import_json(project_id, encode_tasks(tasks), len(tasks))

    def import_json(self, project_id: int, body: bytes, n_tasks: int) -> list[int]:
        """:meth:`import_tasks` of tasks already encoded by :func:`encode_tasks` (so a
        background thread sending them does not compete for the GIL to serialise)."""
        data = self.request(
            "POST",
            f"/api/projects/{project_id}/import",
            data=body,
            headers={"Content-Type": "application/json"},
            params={"return_task_ids": "true", "commit_to_project": "true"},
        )
        ids = data.get("task_ids") if isinstance(data, dict) else None
        if ids is None or len(ids) != n_tasks:
            raise LabelStudioError(
                f"import into project {project_id}: expected {n_tasks} task ids, got "
                f"{'none' if ids is None else len(ids)}"
            )
        return [int(i) for i in ids]

    def set_overlap(self, task_id: int, overlap: int) -> None:
        self.patch(f"/api/tasks/{task_id}", {"overlap": overlap})

    def delete_task(self, task_id: int) -> None:
        self.delete(f"/api/tasks/{task_id}")

    def create_annotation(
        self,
        task_id: int,
        result: list[dict],
        completed_by: int | None = None,
        lead_time: float | None = None,
        was_cancelled: bool = False,
    ) -> dict:
        payload: dict[str, Any] = {"result": result, "was_cancelled": was_cancelled}
        if completed_by is not None:
            payload["completed_by"] = completed_by
        if lead_time is not None:
            payload["lead_time"] = lead_time
        return self.post(f"/api/tasks/{task_id}/annotations", payload)

    def task_annotations(self, task_id: int) -> list[dict]:
        return self.get(f"/api/tasks/{task_id}/annotations") or []

    def export(self, project_id: int, export_type: str = "JSON", all_tasks: bool = True) -> list:
        """The project's tasks with their annotations (``all_tasks`` includes unlabelled ones)."""
        params = {"exportType": export_type, "download_all_tasks": str(all_tasks).lower()}
        return self.get(f"/api/projects/{project_id}/export", params=params) or []


def encode_tasks(tasks: list[dict]) -> bytes:
    """The JSON body of a bulk import (UTF-8, non-ASCII kept as is: smaller than escapes)."""
    return json.dumps(tasks, ensure_ascii=False, allow_nan=False).encode("utf-8")
