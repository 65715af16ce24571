"""The WebUI's tables, jobs panel and case comparison in a real browser (Playwright, Chromium).

Each test opens an app on a live node as carol and works as a user would: the keyboard, a paste
from a spreadsheet (a paste event carrying tab-separated text), the cases dialog.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.browser import log_in
from tests.helpers import EXAMPLES, publish_as

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.live]

# Screenshots for a person to look at; the checks themselves are in the assertions.
SHOTS = Path(os.environ.get("PRO_WEBUI_SHOTS", "/tmp/webui-shots"))

BIG_MODEL = """
import time

from pro_sdk import App, Button, Field, Table

app = App("bigtable", title="Big table")
rows = app.set("rows", default=[f"r{i:03d}" for i in range(100)], title="Rows")
cols = app.set("cols", default=[f"c{j:02d}" for j in range(100)], title="Columns")
grid = app.parameter("grid", index=[rows, cols], default=0.0, title="Grid")
total = app.output("total", title="Total")
note = app.output("note", type="str", title="Note")


@app.procedure(title="Describe")
def describe(data):
    data["note"] = " ".join(f"Sentence {i} of a note longer than any field." for i in range(40))


@app.solve(title="Solve", time_limit=60)
def solve(data, ctx):
    for step in range(60):
        ctx.log(f"step {step} of 60")
        time.sleep(0.075)
    data["total"] = sum(data["grid"].values())


app.page("Grid", [Table(grid), Button(solve), Field(total), Button(describe), Field(note)])
"""


def wait_status(page, pattern: str, timeout: float = 60) -> None:
    page.wait_for_function(
        "(pattern) => new RegExp(pattern).test(document.getElementById('status').textContent)",
        arg=pattern,
        timeout=timeout * 1000,
    )


def screenshot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"after-{name}.png"), full_page=True)


@pytest.fixture
def transport_for_carol(carol, alice, runtime, platform_public_key):
    """Published before the browser starts: Playwright's event loop forbids the ORM in this thread."""
    from sessions.runtime import package

    blob, _ = package.pack_folder(EXAMPLES / "transport", platform_public_key)
    publish_as(alice, blob).app.grants.create(user=carol, level="viewer")


@pytest.fixture
def bigtable_for_carol(carol, alice, runtime, platform_public_key, make_app_folder):
    """100 x 100 editable cells, a slow solve with a long log, and a long text output."""
    from sessions.runtime import package

    folder = make_app_folder(name="bigtable", title="Big table")
    (folder / "demo_model.py").write_text(BIG_MODEL)
    blob, _ = package.pack_folder(folder, platform_public_key)
    version = publish_as(alice, blob)
    assert version.verification_state == "verified", version.verification_error
    version.app.grants.create(user=carol, level="viewer")


def open_app(page, base: str, app: str) -> None:
    log_in(page, base, "carol")
    page.locator(f"[data-app={app}]").get_by_role("button", name="Open").click()
    page.wait_for_selector("#page input.webui-cell")


def paste(page, label: str, text: str) -> None:
    """What a paste from a spreadsheet does: a paste event on the focused cell."""
    page.evaluate(
        """([label, text]) => {
            const input = document.querySelector(`input[aria-label="${label}"]`);
            input.focus();
            const data = new DataTransfer();
            data.setData("text/plain", text);
            input.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
        }""",
        [label, text],
    )


def cost_values(page) -> list[str]:
    return page.locator("table[data-identifier=cost] tbody input").evaluate_all("cells => cells.map(c => c.value)")


def focused_label(page) -> str:
    return page.evaluate("document.activeElement.getAttribute('aria-label')")


def test_two_dimensional_table_headers_sit_over_their_columns(live_node, transport_for_carol, browser_page):
    page, errors = browser_page
    open_app(page, live_node.url, "transport")
    table = page.locator("table[data-identifier=cost]")
    assert table.evaluate("t => getComputedStyle(t).display") == "table", "no stylesheet may turn it into a grid"
    heads = table.locator("thead th").all()
    first_row = table.locator("tbody tr").first.locator("th, td").all()
    assert [h.inner_text() for h in heads[1:]] == ["New-York", "Chicago", "Topeka"]
    assert len(heads) == len(first_row) == 4
    for head, cell in zip(heads, first_row, strict=True):
        h, c = head.bounding_box(), cell.bounding_box()
        assert abs(h["x"] - c["x"]) < 1 and abs(h["width"] - c["width"]) < 1, (head.inner_text(), h, c)
    caption = table.locator("caption").bounding_box()
    assert 0 <= heads[0].bounding_box()["y"] - (caption["y"] + caption["height"]) < 4, "no gap under the caption"

    # What a screen reader needs: header scopes, a grid of editable cells, tabs and their panel.
    assert table.get_attribute("role") == "grid"
    assert {h.get_attribute("scope") for h in heads} == {"col"}
    assert table.locator("tbody th").evaluate_all("hs => hs.map(h => h.scope)") == ["row", "row"]
    assert page.get_by_role("tablist").get_by_role("tab").count() == 2
    assert page.get_by_role("tab", name="Data").get_attribute("aria-selected") == "true"
    assert page.get_by_role("tabpanel").get_attribute("aria-labelledby") == page.get_by_role(
        "tab", name="Data"
    ).get_attribute("id")
    screenshot(page, "table")

    # Arrows move between tabs; the Results page has no results yet: a chart says so.
    page.get_by_role("tab", name="Data").focus()
    page.keyboard.press("ArrowRight")
    assert page.get_by_role("tab", name="Results").get_attribute("aria-selected") == "true"
    assert page.locator(".webui-chart .webui-empty").inner_text() == "No data to chart: every value is empty or 0."
    assert page.locator(".webui-chart canvas").count() == 0
    shipments = page.locator("table[data-identifier=shipments]")
    assert shipments.get_attribute("role") is None, "outputs are a plain table, not an editable grid"
    assert shipments.locator("thead th").evaluate_all("hs => hs.map(h => h.scope)") == ["col"] * 4
    assert not errors, errors


def test_paste_refreshes_every_cell_and_marks_each_refused_value(live_node, transport_for_carol, browser_page):
    page, errors = browser_page
    open_app(page, live_node.url, "transport")
    before = cost_values(page)
    assert before == ["0.225", "0.153", "0.162", "0.225", "0.162", "0.126"]

    paste(page, "cost Seattle New-York", "1\tlots\t3\nmany\t5\t6\n")
    page.wait_for_function("() => document.querySelectorAll('input.webui-invalid').length === 2")
    assert cost_values(page) == ["0.225", "lots", "0.162", "many", "0.162", "0.126"], "refused values in place"
    chicago = page.get_by_label("cost Seattle Chicago")
    assert "expected a number, got 'lots'" in chicago.get_attribute("title")
    assert chicago.get_attribute("aria-invalid") == "true"
    assert "got 'many'" in page.get_by_label("cost San-Diego New-York").get_attribute("title")
    listed = page.locator(".webui-table:has(table[data-identifier=cost]) ul.webui-errors li").all_inner_texts()
    assert len(listed) == 2 and any("'lots'" in item for item in listed) and any("'many'" in item for item in listed)
    assert "2 pasted cell(s) are not valid" in page.locator("#status").inner_text()
    screenshot(page, "paste-refused")

    paste(page, "cost Seattle New-York", "1\t2\t3\n4\t5\t6")
    wait_status(page, "Pasted 6 cells into cost")
    assert cost_values(page) == ["1", "2", "3", "4", "5", "6"], "the focused cell too"
    assert focused_label(page) == "cost Seattle New-York"
    assert page.locator("input.webui-invalid").count() == 0
    assert page.get_by_label("cost Seattle Chicago").get_attribute("title") is None
    assert page.locator("ul.webui-errors li").count() == 0

    page.keyboard.press("Control+z")
    wait_status(page, "Undid the last change of cost")
    assert cost_values(page) == before, "undo takes the whole paste back"
    assert not errors, errors


def test_keyboard_moves_edits_cancels_and_undoes_like_a_spreadsheet(live_node, transport_for_carol, browser_page):
    page, errors = browser_page
    open_app(page, live_node.url, "transport")
    page.get_by_label("cost Seattle New-York").focus()
    page.keyboard.press("ArrowRight")
    assert focused_label(page) == "cost Seattle Chicago"
    page.keyboard.press("ArrowDown")
    assert focused_label(page) == "cost San-Diego Chicago"
    page.keyboard.press("ArrowLeft")
    assert focused_label(page) == "cost San-Diego New-York"
    page.keyboard.press("ArrowUp")
    assert focused_label(page) == "cost Seattle New-York"

    page.keyboard.press("ArrowRight")
    page.keyboard.type("9")
    page.keyboard.press("ArrowLeft")  # while typing, the arrows move the caret, not the cell
    assert focused_label(page) == "cost Seattle Chicago"
    page.keyboard.press("Escape")
    assert page.get_by_label("cost Seattle Chicago").input_value() == "0.153", "Escape cancels the edit"
    assert focused_label(page) == "cost Seattle Chicago"

    page.keyboard.type("0.5")
    page.keyboard.press("Enter")
    assert focused_label(page) == "cost San-Diego Chicago", "Enter saves and moves down"
    wait_status(page, "cost updated")
    page.keyboard.press("Tab")
    assert focused_label(page) == "cost San-Diego Topeka"
    page.keyboard.press("Shift+Tab")
    assert focused_label(page) == "cost San-Diego Chicago"
    assert page.get_by_label("cost Seattle Chicago").input_value() == "0.5"

    page.keyboard.press("Control+z")
    wait_status(page, "Undid the last change of cost")
    assert page.get_by_label("cost Seattle Chicago").input_value() == "0.153"
    page.reload()  # what the session holds, not only what the page shows
    page.wait_for_selector("#page input.webui-cell")
    assert page.get_by_label("cost Seattle Chicago").input_value() == "0.153"
    assert not errors, errors


def test_a_large_table_a_slow_solve_and_long_outputs(live_node, bigtable_for_carol, browser_page):
    page, errors = browser_page
    clicked = time.monotonic()
    open_app(page, live_node.url, "bigtable")
    rendered = time.monotonic() - clicked
    cells = page.locator("table[data-identifier=grid] tbody input")
    assert cells.count() == 10_000

    block = "\n".join("\t".join(str(r * 100 + c) for c in range(100)) for r in range(100))
    started = time.monotonic()
    paste(page, "grid r000 c00", block)
    wait_status(page, "Pasted 10000 cells into grid")
    pasted = time.monotonic() - started
    assert page.get_by_label("grid r099 c99").input_value() == "9999"
    assert page.get_by_label("grid r000 c00").input_value() == "0"
    started = time.monotonic()
    page.reload()  # the session is up: this is the page, the state frame and the table alone
    page.wait_for_selector("#page input.webui-cell")
    reloaded = time.monotonic() - started
    assert page.get_by_label("grid r099 c99").input_value() == "9999"
    # Rebuilding the page (as a tab click does), layout included: the table's own cost.
    rebuilt = page.evaluate(
        "() => { const t = performance.now(); document.getElementById('webui-tab-0').click();"
        " document.body.getBoundingClientRect(); return performance.now() - t; }"
    )
    scroller = page.locator(".webui-scroll").first
    scroller.evaluate("box => { box.scrollTop = box.scrollHeight; box.scrollLeft = box.scrollWidth; }")
    corner = page.get_by_label("grid r099 c99").bounding_box()
    head = page.locator("table[data-identifier=grid] thead th").last.bounding_box()
    assert head["y"] < corner["y"] and abs(head["x"] - corner["x"]) < 8, "the headers stay in view and aligned"

    solve = page.get_by_role("button", name="Solve")
    solve.click()
    page.wait_for_selector("#jobs [data-job] .badge")
    state = page.locator("#jobs [data-job] .badge").inner_text()
    assert state in ("queued", "running") and solve.is_disabled(), "no second submission while the job is on"
    solve.evaluate("button => button.click()")

    log = page.locator("#jobs pre[data-log]")
    page.wait_for_function(
        "() => { const pre = document.querySelector('#jobs pre[data-log]'); "
        "return pre && pre.scrollHeight > pre.clientHeight + 40; }",
        timeout=60_000,
    )
    assert log.evaluate("pre => pre.scrollHeight - pre.scrollTop - pre.clientHeight") < 4, "it follows the end"
    log.evaluate("pre => { pre.scrollTop = 0; }")
    seen = log.evaluate("pre => pre.textContent.length")
    page.wait_for_function(f"() => document.querySelector('#jobs pre[data-log]').textContent.length > {seen}")
    assert log.evaluate("pre => pre.scrollTop") == 0, "a log the user scrolled up stays where they put it"
    log.evaluate("pre => { pre.scrollTop = pre.scrollHeight; }")
    wait_status(page, "Job \\d+ succeeded")
    assert log.evaluate("pre => pre.scrollHeight - pre.scrollTop - pre.clientHeight") < 4
    assert "step 59 of 60" in log.inner_text()
    assert log.evaluate("pre => pre.clientHeight") < 300, "each log has a height of its own"
    assert page.locator("#jobs [data-job]").count() == 1
    assert solve.is_enabled()
    assert float(page.get_by_label("Total", exact=True).inner_text()) == sum(range(10_000))

    page.get_by_role("button", name="Describe").click()
    note = page.get_by_label("Note", exact=True)
    page.wait_for_function("() => document.querySelector('output[aria-label=Note]').textContent.length > 100")
    assert note.inner_text().endswith("Sentence 39 of a note longer than any field.")
    assert note.evaluate("box => box.scrollWidth <= box.clientWidth"), "long text wraps, it is not cut off"
    screenshot(page, "bigtable")
    print(
        f"\n10,000 cells: opening {rendered:.2f} s, reloading {reloaded:.2f} s (render {rebuilt:.0f} ms), a 100 x 100 paste {pasted:.2f} s"
    )
    assert not errors, errors


def save_case(page, name: str) -> None:
    page.fill("#save-case input[name=name]", name)
    page.click("#save-case button.primary")


def case_ids(page) -> list[str]:
    return page.locator("#case-list tr[data-case]").evaluate_all("rows => rows.map(r => r.dataset.case)")


def test_compare_shows_differences_with_deltas_and_pivots(live_node, transport_for_carol, browser_page):
    page, errors = browser_page
    open_app(page, live_node.url, "transport")
    page.get_by_role("button", name="Cases").click()
    save_case(page, "baseline")
    page.wait_for_selector("#case-list tr[data-case]")
    page.keyboard.press("Escape")
    for label, value in (("cost Seattle Chicago", "0.5"), ("demand Chicago", "320")):
        page.get_by_label(label).fill(value)
        page.get_by_label(label).press("Enter")
        wait_status(page, f"{label.split()[0]} updated")
    page.get_by_role("button", name="Cases").click()
    save_case(page, "more-chicago")
    page.wait_for_function("() => document.querySelectorAll('#case-list tr[data-case]').length === 2")
    for name in ("more-chicago", "baseline"):  # picked newest first: the older is still the old side
        page.locator("#case-list tr", has_text=name).locator("input.webui-compare-pick").check()
    page.click("#compare-button")
    page.wait_for_selector("#comparison table.webui-compare")

    assert "baseline → more-chicago: 2 of" in page.locator("#comparison h3").inner_text()
    shown = page.locator("#comparison table.webui-compare").evaluate_all(
        "tables => tables.map(t => t.dataset.identifier || t.dataset.compare)"
    )
    assert shown == ["cost", "demand"], "only what differs"
    pivot = page.locator("#comparison table[data-identifier=cost]")
    assert pivot.locator("thead th").all_inner_texts() == ["Plants \\ Markets", "Chicago"]
    assert pivot.locator("tbody th").all_inner_texts() == ["Seattle"]
    assert pivot.locator("td.webui-changed").inner_text().split() == ["0.153", "→", "0.5", "Δ", "+0.347"]
    demand = page.locator("#comparison table[data-identifier=demand]")
    assert demand.locator("thead th").all_inner_texts() == ["Markets", "baseline", "more-chicago", "Δ new \u2212 old"]
    assert demand.locator("tbody tr").all_inner_texts() == ["Chicago\t300\t320\t+20"]
    assert "|" not in page.locator("#comparison").inner_text(), "keys are their elements, not joined ids"
    screenshot(page, "compare")

    page.get_by_label("Show unchanged values too").check()
    assert pivot.locator("tbody th").all_inner_texts() == ["Seattle", "San-Diego"]
    assert pivot.locator("thead th").count() == 4
    assert page.locator("#comparison table[data-identifier=supply] tbody tr").count() == 2
    assert page.locator("#comparison table[data-compare=sets] tbody tr").count() == 2
    assert demand.locator("tbody tr").count() == 3
    screenshot(page, "compare-all")
    assert not errors, errors


def test_saving_under_a_taken_name_asks_before_replacing(live_node, transport_for_carol, browser_page):
    page, errors = browser_page
    open_app(page, live_node.url, "transport")
    page.get_by_role("button", name="Cases").click()
    save_case(page, "baseline")
    page.wait_for_selector("#case-list tr[data-case]")
    [first] = case_ids(page)

    save_case(page, "baseline")
    question = page.locator("#save-case-confirm")
    question.wait_for(state="visible")
    assert "A case named “baseline” exists" in question.inner_text()
    assert case_ids(page) == [first], "nothing replaced before the user says so"
    page.get_by_role("button", name="Keep the saved one").click()
    assert question.is_hidden()
    wait_status(page, "Not saved")
    page.evaluate("() => document.querySelector('#case-list tr[data-case]').dataset.seen = 'yes'")
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Cases").click()  # the list as the platform has it now
    page.wait_for_selector("#case-list tr[data-case]:not([data-seen])")
    assert case_ids(page) == [first]

    save_case(page, "baseline")
    question.wait_for(state="visible")
    screenshot(page, "overwrite-question")
    page.get_by_role("button", name="Replace it").click()
    page.wait_for_function(
        "(first) => { const rows = document.querySelectorAll('#case-list tr[data-case]');"
        " return rows.length === 1 && rows[0].dataset.case !== first; }",
        arg=first,
    )
    assert question.is_hidden()
    wait_status(page, "Saved case baseline \\(replaced\\)")
    assert not errors, errors
