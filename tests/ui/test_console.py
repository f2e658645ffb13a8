"""The web console at `/ui/`, in a real browser (Debian's chromium, driven by Playwright).

The end-to-end test goes through the page as a person would: enter the key, submit a
real model with `generate_thumbnails` through the form, watch its row reach SUCCESS,
open its job page, and check the thumbnails and the 3D view show and the wireframe
toggle changes the picture. Others check the vendored decoders (Draco, meshopt, KTX2)
in the viewer, the console behind a path prefix with `open_routes` off, and `ui=False`.

Without chromium these tests skip, saying so, unless `CI` is set: there they fail.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from conftest import API_KEY, DATA, free_port, submit

CHROMIUM = os.environ.get("PIXYZ_TEST_CHROMIUM", "/usr/bin/chromium")
# Headless chromium without a GPU: WebGL through SwiftShader (software), as CI has it.
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
FINAL_TIMEOUT_MS = 180_000


def _no_browser(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"the console tests need chromium in CI: {reason}")
    pytest.skip(f"no browser for the console tests: {reason}")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        _no_browser(f"playwright is not installed ({exc}); scripts/setup.sh test installs it")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _no_browser(f"{CHROMIUM} is missing; scripts/setup.sh test installs Debian's chromium")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
        except Error as exc:
            _no_browser(f"{CHROMIUM} does not start: {exc}")
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # What the console's Content-Security-Policy blocked would break it in real use too.
    page.on(
        "console",
        lambda message: "Content Security Policy" in message.text and errors.append(message.text),
    )
    page.errors = errors
    yield page
    context.close()


def enter_key(page, key: str = API_KEY) -> None:
    page.fill("#key-input", key)
    page.click("#key-save")
    page.wait_for_selector("#key-forget:not([hidden])")


def canvas_image(page) -> Image.Image:
    data_url = page.eval_on_selector("#viewer canvas", "c => c.toDataURL('image/png')")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB")


def not_blank(image: Image.Image) -> bool:
    """More than the background: over 2% of the pixels differ from the corner's colour."""
    background = Image.new("RGB", image.size, image.getpixel((0, 0)))
    differs = ImageChops.difference(image, background).convert("L").point(lambda v: v > 12)
    return sum(differs.getdata()) > 0.02 * image.width * image.height


def test_a_job_from_the_form_to_its_page(page, service, tmp_path):
    page.goto(f"{service.url}/ui/")
    enter_key(page)
    assert page.evaluate("sessionStorage.getItem('pixyz-api-key')") == API_KEY
    page.wait_for_selector("#process-select option", state="attached")

    page.set_input_files("#file-input", str(DATA / "glb" / "CesiumMilkTruck.glb"))
    page.select_option("#process-select", "generate_thumbnails")
    # The params form comes from the process's JSON Schema, defaults shown.
    page.wait_for_selector("[data-param=width]")
    assert page.input_value("[data-param=up_axis]") == json.dumps("auto")
    page.fill("#job-name", "console truck")
    page.click("#submit-button")
    page.wait_for_selector("#submit-status a", timeout=30_000)
    job_id = page.text_content("#submit-status a")
    assert re.fullmatch(r"[0-9a-f-]{36}", job_id), job_id

    row = f"#jobs-table tr[data-uuid='{job_id}']"
    page.wait_for_selector(f"{row}[data-status=SUCCESS]", timeout=FINAL_TIMEOUT_MS)
    cells = page.locator(f"{row} td").all_text_contents()
    assert (
        cells[0] == "SUCCESS" and cells[1] == "generate_thumbnails" and cells[2] == "console truck"
    )
    page.screenshot(path=tmp_path / "jobs.png", full_page=True)

    page.click(f"{row} a")
    page.wait_for_url(f"**/ui/#/jobs/{job_id}")
    page.wait_for_function(
        "[...document.querySelectorAll('#thumbs img')].filter(i => i.naturalWidth > 0).length == 4",
        timeout=30_000,
    )
    assert page.eval_on_selector_all("#thumbs img", "imgs => imgs.map(i => i.dataset.thumb)") == [
        "iso.png",
        "x.png",
        "y.png",
        "z.png",
    ]
    page.wait_for_selector("#viewer[data-state=loaded]", timeout=60_000)
    assert page.input_value("#viewer-select") == "preview.glb"
    assert page.eval_on_selector("#viewer", "v => v.clientHeight") < 1000, "the view keeps growing"
    solid = canvas_image(page)
    assert not_blank(solid), "the 3D view is blank"

    steps = page.locator("#job-steps tbody tr").all_text_contents()
    assert steps and all(re.search(r"\d( ms| s)", step) for step in steps), steps
    outputs = page.locator("#job-outputs tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.output)"
    )
    assert {"iso.png", "x.png", "y.png", "z.png", "preview.glb", "metadata.json"} <= set(outputs)
    page.wait_for_function(
        "[...document.querySelectorAll('#job-outputs td.size')].every(td => td.textContent)"
    )
    metadata = page.locator("#job-metadata th").all_text_contents()
    assert "polygon_count" in metadata, metadata
    page.screenshot(path=tmp_path / "job.png", full_page=True)

    page.check("#viewer-wireframe")
    page.wait_for_selector("#viewer[data-wireframe=true]")
    wire = canvas_image(page)
    assert not_blank(wire)
    changed = ImageChops.difference(solid, wire).getbbox()
    assert changed, "the wireframe toggle did not change the picture"
    page.screenshot(path=tmp_path / "job-wireframe.png", full_page=True)

    with page.expect_download() as download:
        page.click("#job-archive")
    saved = tmp_path / "archive.zip"
    download.value.save_as(saved)
    assert saved.read_bytes().startswith(b"PK")
    assert not page.errors, page.errors


def gltf_with_embedded_buffers(path: Path) -> str:
    gltf = json.loads(path.read_text())
    for buffer in gltf["buffers"]:
        data = (path.parent / buffer["uri"]).read_bytes()
        buffer["uri"] = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
    return json.dumps(gltf)


@pytest.mark.parametrize(
    "model",
    [
        "glb/pirate_meshopt.glb",
        "glb/cottage-basis.glb",
        "gltf/2CylinderEngine_draco/2CylinderEngine.gltf",
    ],
    ids=["meshopt", "ktx2", "draco"],
)
def test_the_viewer_decodes_compressed_gltf(page, service, model, tmp_path):
    # The vendored decoders, no network: the page loads them from /ui/vendor/.
    path = DATA / model
    if path.suffix == ".gltf":
        payload = {"text": gltf_with_embedded_buffers(path)}
    else:
        payload = {"base64": base64.b64encode(path.read_bytes()).decode()}
    page.route(re.compile(r"^(?!http://127\.0\.0\.1).*"), lambda route: route.abort())
    page.goto(f"{service.url}/ui/")
    stats = page.evaluate(
        """async (payload) => {
            const { Viewer } = await import('./viewer.js');
            const box = document.createElement('div');
            box.id = 'viewer';
            box.style.cssText = 'width:600px;height:400px';
            document.body.prepend(box);
            const data = payload.text ?? Uint8Array.from(atob(payload.base64), c => c.charCodeAt(0)).buffer;
            const late = new Promise((_, no) => setTimeout(() => no(new Error('no model after 30 s')), 30000));
            return await Promise.race([new Viewer(box).load(data), late]);
        }""",
        payload,
    )
    assert stats["meshes"] > 0 and stats["triangles"] > 0, stats
    assert not_blank(canvas_image(page))
    page.screenshot(path=tmp_path / "viewer.png")
    assert not page.errors, page.errors


def test_the_viewer_shows_our_meshopt_glb_as_the_plain_one(page, service, tmp_path):
    # What SaveOptions(compression="meshopt") writes (int16 positions, octahedral normals,
    # 12-bit UVs behind KHR_texture_transform, one meshopt view a kind) through three.js's
    # GLTFLoader and meshopt decoder: the same meshes and triangles, the same picture.
    from tasks.steps.io import SaveOptions, load, save

    truck = load(DATA / "glb" / "CesiumMilkTruck.glb")
    plain, packed = tmp_path / "plain.glb", tmp_path / "packed.glb"
    save(truck.copy(), plain)
    save(truck.copy(), packed, SaveOptions(compression="meshopt"))
    # quantization moves edges by under a pixel: the pictures differ only there
    assert_same_picture(page, service, plain, packed)


class PrefixedServer:
    """An app behind a proxy that strips `/some/prefix` (as nginx `proxy_pass .../;` does),
    served by uvicorn on a thread."""

    def __init__(self, app, prefix: str):
        import uvicorn

        async def strip(scope, receive, send):
            if scope["type"] == "http":
                if not scope["path"].startswith(prefix + "/"):
                    await send({"type": "http.response.start", "status": 404, "headers": []})
                    await send({"type": "http.response.body", "body": b"outside the prefix"})
                    return
                path = scope["path"][len(prefix) :]
                scope = {**scope, "path": path, "raw_path": path.encode()}
            await app(scope, receive, send)

        self.port = free_port()
        config = uvicorn.Config(strip, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}{prefix}"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5):
            pass
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_behind_a_path_prefix_with_open_routes_off(page, private_service, tmp_path):
    client, _store = private_service(open_routes=False)
    with PrefixedServer(client.app, "/tools/pixyz") as server:
        page.goto(f"{server.url}/ui/")
        assert page.title() == "PiXYZ console"
        assert page.is_visible("#key-input")
        enter_key(page)  # /processes needs the key now: the console sends it
        page.wait_for_selector("#process-select option", state="attached")
        assert "api_test" in page.locator("#process-select option").all_text_contents()
        page.wait_for_selector("#jobs-count:not(:empty)")
        page.set_input_files("#file-input", str(DATA / "off" / "Wuson.off"))
        page.select_option("#process-select", "api_test")
        page.click("#submit-button")
        page.wait_for_selector("#submit-status a", timeout=30_000)
        job_id = page.text_content("#submit-status a")
        page.wait_for_selector(
            f"#jobs-table tr[data-uuid='{job_id}'][data-status=SUCCESS]", timeout=60_000
        )
        page.click(f"#jobs-table tr[data-uuid='{job_id}'] a")
        page.wait_for_selector("#job-facts td")
        page.wait_for_selector("#job-outputs tbody tr")
        page.screenshot(path=tmp_path / "prefixed.png", full_page=True)
        assert page.is_hidden("#banner"), page.text_content("#banner")
        assert not page.errors, page.errors


def test_a_wrong_key_is_said_and_can_be_replaced(page, service):
    page.goto(f"{service.url}/ui/")
    page.fill("#key-input", "not-a-key")
    page.click("#key-save")
    page.wait_for_selector("#banner:not([hidden])")
    assert "refused" in page.text_content("#banner")
    page.click("#key-forget")
    enter_key(page)
    page.wait_for_selector("#jobs-count:not(:empty)")


def test_ui_setting(private_service):
    on, _ = private_service()
    anonymous = {"x-api-key": ""}
    page = on.get("/ui/", headers=anonymous)
    assert page.status_code == 200 and "PiXYZ console" in page.text
    redirect = on.get("/ui", headers=anonymous, follow_redirects=False)
    assert redirect.status_code in (307, 308) and redirect.headers["location"].endswith("/ui/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    module = on.get("/ui/vendor/three/three.module.js", headers=anonymous)
    assert module.status_code == 200 and "javascript" in module.headers["content-type"]
    assert module.headers["x-content-type-options"] == "nosniff"

    off, _ = private_service(ui=False)
    for path in ("/ui", "/ui/", "/ui/console.js"):
        assert off.get(path).status_code == 404, path


def test_a_running_job_is_followed_live(page, service, client):
    job = submit(client, "sleep", params={"duration": 4}, name="followed")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{service.url}/ui/#/jobs/{job['uuid']}")
    enter_key(page)
    page.wait_for_selector("#job-status.s-RUNNING, #job-status.s-STARTED", timeout=30_000)
    page.wait_for_selector("#job-cancel:not([hidden])")
    page.wait_for_selector("#job-status.s-SUCCESS", timeout=60_000)
    assert page.locator("#job-steps tbody tr").count() >= 4  # one step a second
    assert page.is_hidden("#job-cancel")
    # The job's event stream where the server has one (then no polling), else polling.
    has_events = client.get(f"/jobs/{job['uuid']}/events").status_code == 200
    used_events = any(u.endswith(f"/jobs/{job['uuid']}/events") for u in requests)
    assert used_events == has_events
    assert not page.errors, page.errors


def test_cancel_from_the_table(page, service, client):
    job = submit(client, "sleep", params={"duration": 60}, name="to cancel")
    page.goto(f"{service.url}/ui/")
    enter_key(page)
    row = f"#jobs-table tr[data-uuid='{job['uuid']}']"
    page.select_option("#status-filter", "active")
    page.click(f"{row} button", timeout=30_000)
    page.select_option("#status-filter", "REVOKED")
    page.wait_for_selector(f"{row}[data-status=REVOKED]", timeout=30_000)
    assert client.get(f"/jobs/{job['uuid']}").json()["status"] == "REVOKED"
    assert not page.errors, page.errors


def test_the_viewer_shows_our_ktx2_glb_as_the_plain_one(page, service, tmp_path):
    # What the web preset writes (meshopt geometry, KTX2/Basis textures) through three.js's
    # KTX2Loader: the same triangles and the picture PNG textures give, so the textures are
    # neither flipped nor off in colour (a flipped truck texture changes most of the truck).
    from tasks.steps.io import SaveOptions, basisu, load, save

    if basisu.find_basisu() is None and not os.environ.get("CI"):
        pytest.skip("no basisu encoder (scripts/setup.sh puts it in .tools/)")
    truck = load(DATA / "glb" / "CesiumMilkTruck.glb")
    plain, packed = tmp_path / "plain.glb", tmp_path / "packed.glb"
    save(truck.copy(), plain, SaveOptions(max_texture_size=512))
    web = SaveOptions(compression="meshopt", max_texture_size=512, texture_format="ktx2")
    save(truck.copy(), packed, web)
    # ETC1S and quantization change a few pixels (0.01 %), a flipped texture 10 %
    assert_same_picture(page, service, plain, packed)


def assert_same_picture(page, service, plain, packed):
    """Show two GLBs in the console's viewer (off-host requests blocked): the same meshes
    and triangles, and under 1 % of the pixels changed."""
    page.route(re.compile(r"^(?!http://127\.0\.0\.1).*"), lambda route: route.abort())
    page.goto(f"{service.url}/ui/")
    shown = []
    for path in (plain, packed):
        stats = page.evaluate(
            """async (data) => {
                const { Viewer } = await import('./viewer.js');
                document.getElementById('viewer')?.remove();
                const box = document.createElement('div');
                box.id = 'viewer';
                box.style.cssText = 'width:600px;height:400px';
                document.body.prepend(box);
                const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0)).buffer;
                const late = new Promise((_, no) => setTimeout(() => no(new Error('no model after 30 s')), 30000));
                return await Promise.race([new Viewer(box).load(bytes), late]);
            }""",
            base64.b64encode(path.read_bytes()).decode(),
        )
        page.wait_for_timeout(500)
        shown.append((stats, canvas_image(page)))
    (plain_stats, plain_image), (packed_stats, packed_image) = shown
    assert packed_stats == plain_stats, (packed_stats, plain_stats)
    assert not_blank(packed_image)
    difference = ImageChops.difference(plain_image, packed_image).convert("L")
    changed = sum(difference.point(lambda v: v > 40).getdata())
    assert changed < 0.01 * packed_image.width * packed_image.height, changed
    assert not page.errors, page.errors
