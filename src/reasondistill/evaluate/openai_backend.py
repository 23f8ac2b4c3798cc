"""Candidates from an OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp, a
hosted API), over plain HTTP from the standard library.

Each of a problem's ``k`` samples is its own request (``seed + k``), since not every server
takes ``n > 1``. At most ``concurrency`` requests are in flight. A request that fails —
connection refused, timeout, HTTP 429 or 5xx, a body that is not the expected JSON — is
retried up to ``retries`` times with exponential backoff. After that the sample is reported
failed with its reason, and a problem is yielded when all its samples have an outcome, so
nothing is lost silently. The API key is read from the environment when the backend is made
and goes only into the ``Authorization`` header: it is never logged or written.

Reasoning models that return their chain of thought in a separate field
(``reasoning_content``, or ``reasoning``) and those that write it inside ``<think>`` tags
are both read (:class:`Candidate` keeps the two apart).
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from reasondistill.errors import ReasondistillError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Candidate:
    """One sample: ``content`` (the answer part, or everything), ``reasoning`` (a separate
    reasoning field, if the server sent one), tokens generated, and whether it ran out of
    tokens; or ``error`` when every try failed."""

    content: str = ""
    reasoning: str | None = None
    tokens: int | None = None
    truncated: bool = False
    error: str | None = None
    attempts: int = 1


class RequestFailed(Exception):
    """A request that may be tried again (``retry``) or not."""

    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.retry = retry


class OpenAIBackend:
    name = "openai"
    BACKOFF_S = 0.5  # the first retry waits about this long, each next one twice as long

    def __init__(self, url: str, model: str, *, api_key: str | None, max_new_tokens: int,
                 temperature: float, top_p: float, num_samples: int, seed: int,
                 concurrency: int = 4, retries: int = 3, timeout_s: float = 120.0) -> None:
        self.endpoint = url.rstrip("/") + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.num_samples, self.seed = num_samples, seed
        self.concurrency, self.retries = concurrency, retries
        self.timeout_s = timeout_s

    def iter_candidates(self, messages: Sequence[list[dict]]
                        ) -> Iterator[tuple[int, list[Candidate]]]:
        """``(problem index, its k candidates)`` as each problem's samples all finish."""
        pending: dict[int, dict[int, Candidate]] = {}
        jobs = iter([(i, k) for i in range(len(messages)) for k in range(self.num_samples)])
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            running = {}

            def submit_next() -> bool:
                job = next(jobs, None)
                if job is None:
                    return False
                running[pool.submit(self.sample, messages[job[0]], job[1])] = job
                return True

            for _ in range(self.concurrency):
                if not submit_next():
                    break
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    index, k = running.pop(future)
                    pending.setdefault(index, {})[k] = future.result()
                    if len(pending[index]) == self.num_samples:
                        samples = pending.pop(index)
                        yield index, [samples[j] for j in range(self.num_samples)]
                    submit_next()

    def sample(self, messages: list[dict], k: int) -> Candidate:
        """Sample ``k`` of a problem, retried with backoff; never raises for a server fault."""
        body = {"model": self.model, "messages": messages, "max_tokens": self.max_new_tokens,
                "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed + k}
        reason = ""
        for attempt in range(1, self.retries + 2):
            try:
                return self._parse(self._post(body), attempt)
            except RequestFailed as failure:
                reason = str(failure)
                if not failure.retry or attempt > self.retries:
                    return Candidate(error=reason, attempts=attempt)
            delay = self.BACKOFF_S * 2 ** (attempt - 1)
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311 — jitter, not security
        return Candidate(error=reason, attempts=self.retries + 1)

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint, data=json.dumps(body).encode("utf-8"),
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise RequestFailed(f"HTTP {error.code}", retry=error.code in RETRY_STATUS) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise RequestFailed(f"no response ({type(reason).__name__}: {reason})",
                                retry=True) from None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestFailed("the response is not JSON", retry=True) from None

    @staticmethod
    def _parse(payload: dict, attempt: int) -> Candidate:
        try:
            choice = payload["choices"][0]
            message = choice["message"]
            content = message.get("content") or ""
            reasoning = message.get("reasoning_content") or message.get("reasoning")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise RequestFailed("the response has no choices[0].message", retry=True) from None
        if not isinstance(content, str) or not (reasoning is None or isinstance(reasoning, str)):
            raise RequestFailed("the message content is not text", retry=True)
        usage = payload.get("usage") or {}
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        return Candidate(content=content, reasoning=reasoning,
                         tokens=tokens if isinstance(tokens, int) else None,
                         truncated=choice.get("finish_reason") == "length", attempts=attempt)


def check_teacher(teacher_cfg) -> None:
    """A ``backend: openai`` teacher names its server and model."""
    if not teacher_cfg.url:
        raise ReasondistillError("generate.teacher.url: an OpenAI-compatible base URL is "
                                 "needed with backend: openai, e.g. http://127.0.0.1:8000/v1")
    if not teacher_cfg.url.startswith(("http://", "https://")):
        raise ReasondistillError(f"generate.teacher.url {teacher_cfg.url!r}: expected an "
                                 "http:// or https:// URL")
    if not teacher_cfg.model:
        raise ReasondistillError("generate.teacher.model: the model name the server serves")


def make_openai_backend(teacher_cfg, generate_cfg, *, environ=None) -> OpenAIBackend:
    """The backend a ``generate.teacher`` section with ``backend: openai`` describes."""
    import os

    environ = os.environ if environ is None else environ
    check_teacher(teacher_cfg)
    api_key = environ.get(teacher_cfg.api_key_env) if teacher_cfg.api_key_env else None
    return OpenAIBackend(
        teacher_cfg.url, teacher_cfg.model, api_key=api_key,
        max_new_tokens=generate_cfg.max_new_tokens, temperature=generate_cfg.temperature,
        top_p=generate_cfg.top_p, num_samples=generate_cfg.samples, seed=generate_cfg.seed,
        concurrency=generate_cfg.concurrency, retries=generate_cfg.retries,
        timeout_s=generate_cfg.timeout_s)
