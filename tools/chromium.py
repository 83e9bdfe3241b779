"""Headless Chromium driven over the DevTools protocol: what a person sees, and what it fetched.

``Chromium.open(url)`` starts the distribution's ``chromium`` with a fresh profile in a
temporary folder (no sandbox, GPU, QUIC, sync, component updates or background networking),
connects to its DevTools websocket on loopback with aiohttp, and loads one page. The page
object evaluates JavaScript, takes screenshots and keeps every network request the page made
(``Network.requestWillBeSent``), so a test can assert that nothing left the page.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["CHROMIUM_FLAGS", "Chromium", "Page", "find_chromium"]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


def find_chromium() -> str | None:
    """The distribution's Chromium (``apt-get install chromium``), or ``None``."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@dataclass
class Page:
    """One tab, attached with a flat DevTools session."""

    _ws: aiohttp.ClientWebSocketResponse
    _session: str
    _ids: itertools.count[int]
    _pending: dict[int, asyncio.Future[dict[str, Any]]]
    requests: list[str] = field(default_factory=list)
    _loaded: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[number] = future
        message = {"id": number, "method": method, "params": params, "sessionId": self._session}
        await self._ws.send_str(json.dumps(message))
        return await asyncio.wait_for(future, 60)

    def event(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method == "Network.requestWillBeSent":
            self.requests.append(message["params"]["request"]["url"])
        elif method == "Page.loadEventFired":
            self._loaded.set()

    async def goto(self, url: str) -> None:
        self._loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self._loaded.wait(), 60)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (returned by value: JSON-able results)."""
        reply = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            msg = f"page script failed: {reply['exceptionDetails']}"
            raise RuntimeError(msg)
        return reply["result"].get("value")

    async def screenshot(self, *, width: int, full_page: bool = True) -> bytes:
        """A PNG of the page: the whole height at ``width`` CSS pixels when ``full_page``,
        else the viewport as it is."""
        if full_page:
            height = int(await self.evaluate("document.documentElement.scrollHeight"))
            await self.send(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
        if full_page:
            shot = await self.send(
                "Page.captureScreenshot", format="png", captureBeyondViewport=True
            )
        else:
            size = await self.evaluate("[window.innerWidth, window.innerHeight]")
            clip = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
            shot = await self.send("Page.captureScreenshot", format="png", clip=clip)
        return base64.b64decode(shot["data"])


class Chromium:
    """``async with Chromium.open(url) as page: await page.evaluate(...)``."""

    @staticmethod
    @contextlib.asynccontextmanager
    async def open(url: str, *, width: int = 1200) -> AsyncIterator[Page]:
        """Start Chromium and load ``url`` (``Path(...).resolve().as_uri()`` for a file)."""
        binary = find_chromium()
        if binary is None:
            msg = "Chromium is not installed: run `apt-get install -y chromium` (make test does)"
            raise RuntimeError(msg)
        with tempfile.TemporaryDirectory(prefix="async-amp-chromium-") as profile:
            process = await asyncio.create_subprocess_exec(
                binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},900",
                "about:blank",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={**os.environ, "HOME": profile},
            )
            try:
                devtools = await asyncio.wait_for(_devtools_url(process), 60)
                async with (
                    aiohttp.ClientSession() as http,
                    http.ws_connect(devtools, max_msg_size=0) as ws,
                ):
                    yield await _attach(ws, url)
            finally:
                if process.returncode is None:
                    process.terminate()
                    try:
                        await asyncio.wait_for(process.wait(), 10)
                    except TimeoutError:
                        process.kill()
                        await process.wait()


async def _devtools_url(process: asyncio.subprocess.Process) -> str:
    assert process.stderr is not None
    while line := await process.stderr.readline():
        found = _LISTENING.search(line)
        if found:
            return found.group(1).decode()
    msg = "Chromium exited before opening its DevTools port"
    raise RuntimeError(msg)


async def _attach(ws: aiohttp.ClientWebSocketResponse, url: str) -> Page:
    ids = itertools.count(1)
    pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
    pages: dict[str, Page] = {}

    async def pump() -> None:
        async for raw in ws:
            if raw.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(raw.data)
            if "id" in message and message["id"] in pending:
                future = pending.pop(message["id"])
                if "error" in message:
                    future.set_exception(RuntimeError(f"DevTools: {message['error']}"))
                else:
                    future.set_result(message.get("result", {}))
            elif message.get("sessionId") in pages:
                pages[message["sessionId"]].event(message)

    reader = asyncio.get_running_loop().create_task(pump())
    ws._async_amp_reader = reader  # type: ignore[attr-defined]  # kept alive with the socket

    async def browser(method: str, **params: Any) -> dict[str, Any]:
        number = next(ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        pending[number] = future
        await ws.send_str(json.dumps({"id": number, "method": method, "params": params}))
        return await asyncio.wait_for(future, 60)

    target = await browser("Target.createTarget", url="about:blank")
    attached = await browser("Target.attachToTarget", targetId=target["targetId"], flatten=True)
    page = Page(ws, attached["sessionId"], ids, pending)
    pages[page._session] = page
    await page.send("Network.enable")
    await page.send("Page.enable")
    await page.goto(url)
    return page
