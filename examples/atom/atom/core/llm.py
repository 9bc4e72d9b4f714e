"""LLM access for Atom agents.

Agents depend on the small :class:`LLMClient` interface; the production implementation talks to
an OpenAI-compatible chat-completions endpoint.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import httpx


class LLMError(RuntimeError):
    """The language model could not produce a response."""


@runtime_checkable
class LLMClient(Protocol):
    """Anything that can turn a prompt into a completion."""

    async def generate_response(self, prompt: str) -> str: ...


class OpenAIChatClient:
    """LLM client for an OpenAI-compatible ``/chat/completions`` API."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        model: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        system_prompt: str = "You are Atom, a careful meta-agent. Think step by step.",
    ) -> None:
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise LLMError("OPENAI_API_KEY is not set; pass api_key= or configure the environment")
        self._api_key = api_key
        self.model = model or os.environ.get("ATOM_LLM_MODEL", "gpt-4o-mini")
        self.base_url = (
            base_url or os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        ).rstrip("/")
        self.timeout = timeout
        self.system_prompt = system_prompt

    async def generate_response(self, prompt: str) -> str:
        payload = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": self.system_prompt},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0.2,
        }
        headers = {"Authorization": f"Bearer {self._api_key}"}
        try:
            async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout) as client:
                response = await client.post("/chat/completions", json=payload, headers=headers)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            raise LLMError(f"LLM request failed: {exc}") from exc
        try:
            return response.json()["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, ValueError) as exc:
            raise LLMError("unexpected LLM response shape") from exc
