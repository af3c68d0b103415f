"""Headless Chromium driven over the Chrome DevTools Protocol, for the browser tests.

Chromium (Debian's ``chromium`` at /usr/bin/chromium) is started with a DevTools port on 127.0.0.1 and a
profile of its own; the tests talk to it over one WebSocket (aiohttp's client), as Puppeteer does,
without another dependency. A test opens pages, follows links by clicking them as a person would,
waits for elements (never for a fixed time), downloads files into a folder of its own, reads which
fonts drew a piece of text, and takes full-page screenshots.

Every wait is bounded (``TIMEOUT`` seconds), and the browser is stopped, by its own process id, when
the module's tests are done.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",  # a screenshot is as wide as the page, not less a scroll bar
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
)
TIMEOUT = 30.0  # seconds for any one wait: a start, a page, an element, a download
POLL = 0.05  # between two looks for an element


class BrowserError(Exception):
    """Chromium did not start, answered a command with an error, or a wait ran out."""


async def _until(condition: Any, what: str, timeout: float = TIMEOUT) -> Any:
    """Call ``condition`` (async) until it returns something true, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / POLL) + 1):
        found = await condition()
        if found:
            return found
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL)
    raise BrowserError(f"waited {timeout:g} s for {what}")


class Browser:
    """One Chromium process and its DevTools connection."""

    def __init__(self, process: asyncio.subprocess.Process, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._process = process
        self._socket = socket
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, folder: Path) -> AsyncIterator[Browser]:
        """A browser with its profile in ``folder``, stopped (and its profile removed) at the end."""
        profile = folder / "profile"
        process = await asyncio.create_subprocess_exec(
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        session = aiohttp.ClientSession()
        try:
            port_file = profile / "DevToolsActivePort"

            async def endpoint() -> str | None:
                if process.returncode is not None:
                    raise BrowserError(f"chromium exited with {process.returncode}")
                lines = port_file.read_text().split("\n") if port_file.exists() else []
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}" if len(lines) >= 2 and lines[1] else None

            url = await _until(endpoint, "chromium's DevTools port")
            socket = await session.ws_connect(url, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=5))
            browser = cls(process, socket)
            try:
                yield browser
            finally:
                await browser._close()
        finally:
            await session.close()
            if process.returncode is None:
                process.kill()  # this browser only, by its own process
            await process.wait()
            shutil.rmtree(profile, ignore_errors=True)

    async def _close(self) -> None:
        with contextlib.suppress(BrowserError, ConnectionError, asyncio.TimeoutError):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._socket.close()

    async def _read(self) -> None:
        async for message in self._socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            waiter = self._waiting.pop(data.get("id", -1), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(data)
            elif "method" in data:
                self.events.append(data)
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(BrowserError("the DevTools connection closed"))

    async def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        """One DevTools command; its result, or ``BrowserError`` with the browser's message."""
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = answer
        await self._socket.send_str(json.dumps(message))
        try:
            data = await asyncio.wait_for(answer, TIMEOUT)
        except TimeoutError:
            raise BrowserError(f"no answer to {method} within {TIMEOUT:g} s") from None
        if "error" in data:
            raise BrowserError(f"{method}: {data['error'].get('message')}")
        return data.get("result", {})

    async def event(self, method: str, match: dict[str, Any], what: str) -> dict[str, Any]:
        """The first event ``method`` whose parameters hold ``match``, waiting for it if it has not come."""

        async def arrived() -> dict[str, Any] | None:
            for event in self.events:
                params = event.get("params", {})
                if event["method"] == method and all(params.get(k) == v for k, v in match.items()):
                    return dict(params)
            return None

        found: dict[str, Any] = await _until(arrived, what)
        return found

    async def page(self, *, width: int = 1280, height: int = 900, isolated: bool = False) -> Page:
        """A new tab, sized ``width`` x ``height``; ``isolated``: in a context of its own, with no cookies."""
        params: dict[str, Any] = {"url": "about:blank"}
        if isolated:
            params["browserContextId"] = (await self.send("Target.createBrowserContext"))["browserContextId"]
        target = (await self.send("Target.createTarget", params))["targetId"]
        session = (await self.send("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "DOM", "CSS"):
            await page.send(f"{domain}.enable")
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page

    async def download_into(self, folder: Path) -> None:
        """Save every download into ``folder`` under its own name, and report its progress."""
        folder.mkdir(parents=True, exist_ok=True)
        await self.send(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder), "eventsEnabled": True}
        )


class Page:
    """One tab of the browser."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self._documents = itertools.count(1)

    async def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self.browser.send(method, params, self.session)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values only)."""
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    async def _mark(self) -> str:
        """Mark the document shown now, so that a wait can tell when another has replaced it."""
        mark = f"document-{next(self._documents)}"
        await self.evaluate(f"window.__medsettle_mark = {json.dumps(mark)}")
        return mark

    async def _replaced(self, mark: str, what: str) -> None:
        async def loaded() -> bool:
            state = await self.evaluate(
                f"window.__medsettle_mark !== {json.dumps(mark)} && document.readyState === 'complete'"
            )
            return bool(state)

        await _until(loaded, what)

    async def goto(self, url: str) -> None:
        """Open ``url`` as if typed into the address bar, and wait until its page has loaded."""
        mark = await self._mark()
        await self.send("Page.navigate", {"url": url})
        await self._replaced(mark, url)

    async def _press(self, selector: str) -> None:
        """A real click (the browser's own mouse events, not a script's) in the middle of the element."""
        await self.wait_for(selector)
        centre = await self.evaluate(
            f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
                el.scrollIntoView({{block: 'center', inline: 'center'}});
                const box = el.getBoundingClientRect();
                return [box.left + box.width / 2, box.top + box.height / 2]; }})()"""
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": centre[0], "y": centre[1], "button": "left", "clickCount": 1},
            )

    async def click(self, selector: str) -> None:
        """Click the element as a person would, and wait for the page it leads to."""
        await self.wait_for(selector)
        mark = await self._mark()
        await self._press(selector)
        await self._replaced(mark, f"the page {selector} leads to")

    async def click_to_download(self, selector: str, folder: Path) -> Path:
        """Click a download link and wait for the file to be whole in ``folder``, which it alone is saved in."""
        await self.browser.download_into(folder)
        before = len(self.browser.events)
        await self._press(selector)

        async def begun() -> dict[str, Any] | None:
            for event in self.browser.events[before:]:
                if event["method"] == "Browser.downloadWillBegin":
                    return dict(event["params"])
            return None

        started = await _until(begun, f"a download from {selector}")
        await self.browser.event("Browser.downloadProgress", {"guid": started["guid"], "state": "completed"}, selector)
        return folder / started["suggestedFilename"]

    async def wait_for(self, selector: str) -> None:
        async def present() -> bool:
            return bool(await self.evaluate(f"document.querySelector({json.dumps(selector)}) !== null"))

        await _until(present, selector)

    async def text(self, selector: str) -> str:
        """The element's text as it is shown (``innerText``)."""
        await self.wait_for(selector)
        return str(await self.evaluate(f"document.querySelector({json.dumps(selector)}).innerText"))

    async def html(self) -> str:
        return str(await self.evaluate("document.documentElement.outerHTML"))

    async def url(self) -> str:
        return str(await self.evaluate("location.href"))

    async def media(self, media: str) -> None:
        """Lay the page out for ``print`` (its print style), or for the screen again (``""``)."""
        await self.send("Emulation.setEmulatedMedia", {"media": media})

    async def set_cookie(self, name: str, value: str, url: str) -> None:
        await self.send("Network.setCookie", {"name": name, "value": value, "url": url})

    async def fonts(self, selector: str) -> list[str]:
        """The font families Chromium drew the element's own text with: a Chinese text drawn in a font that
        has no Chinese glyphs shows as boxes (tofu)."""
        await self.wait_for(selector)
        root = (await self.send("DOM.getDocument", {"depth": 0}))["root"]["nodeId"]
        node = (await self.send("DOM.querySelector", {"nodeId": root, "selector": selector}))["nodeId"]
        used = await self.send("CSS.getPlatformFontsForNode", {"nodeId": node})
        return [font["familyName"] for font in used.get("fonts", [])]

    async def overflowing(self, selector: str) -> list[str]:
        """What under ``selector`` is cut off: an element whose content is wider than its box (a box that
        scrolls sideways on purpose aside), or a chart's text reaching outside its chart."""
        return list(
            await self.evaluate(
                f"""(() => {{
                const boxes = Array.from(document.querySelectorAll({json.dumps(selector + " *")}))
                    .filter(el => !(el instanceof SVGElement) && el.clientWidth > 0
                                  && el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'auto')
                    .map(el => el.tagName + (el.id ? '#' + el.id : '') + ': ' + el.textContent.slice(0, 40));
                const texts = Array.from(document.querySelectorAll({json.dumps(selector + " svg text")}))
                    .filter(text => {{
                        const chart = text.ownerSVGElement.getBoundingClientRect();
                        const box = text.getBoundingClientRect();
                        return box.left < chart.left - 1 || box.right > chart.right + 1
                            || box.top < chart.top - 1 || box.bottom > chart.bottom + 1;
                    }})
                    .map(text => 'svg text in #' + text.ownerSVGElement.id + ': ' + text.textContent.slice(0, 40));
                return boxes.concat(texts); }})()"""
            )
        )

    async def screenshot(self, path: Path) -> Path:
        """The whole page, not only the window, as a PNG at ``path``."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        shot = await self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"screenshot: {path}")  # for a person to look at (pytest -s shows it)
        return path


@functools.cache
def chinese_fonts_installed() -> bool:
    """Whether fontconfig knows a font with Chinese glyphs (fonts-noto-cjk, which .ci/run installs beside
    Chromium); without one Chinese shows as boxes, and ``assert_chinese_is_drawn`` has nothing to check."""
    if shutil.which("fc-list") is None:
        return False
    found = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30, check=False)
    return bool(found.stdout.strip())


async def assert_chinese_is_drawn(page: Page, selector: str) -> None:
    """The element's Chinese text is drawn in a font that has Chinese glyphs, not as boxes (tofu)."""
    fonts = await page.fonts(selector)
    if chinese_fonts_installed():
        assert any("CJK" in font or "Hei" in font or "Song" in font for font in fonts), (selector, fonts)
