"""``rag mcp`` as an assistant's MCP client sees it: the official SDK's own client, over stdio
(the server started as a desktop app starts it) and over streamable HTTP on 127.0.0.1, with
the bundled models and the samples in two workspaces."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from rag.cli.output import EXIT_ERROR
from rag.models.embeddings import Embedder
from tests.servers import free_port, store_two_workspaces, wait_until_serving

pytestmark = pytest.mark.slow

KEY = "mcp-key-51c2"
CHARGE = "How long does a full charge of the battery take?"
KESTREL = "What does the kestrel do over the meadow?"
TOOLS = {"search", "ask", "list_documents", "read_document", "list_workspaces"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    return store_two_workspaces(tmp_path_factory.mktemp("mcp"), embedder)


def _environment(data_dir: Path, **more: str) -> dict[str, str]:
    return {**os.environ, "RAG_DATA_DIR": str(data_dir), **more}


async def _call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def _error(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error
    text = " ".join(getattr(part, "text", "") for part in result.content)
    assert "Traceback" not in text
    return text


async def _use_every_tool(client: Client) -> None:
    """What an assistant does: lists the tools, searches, asks, reads, and makes mistakes."""
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert len(tool.description or "") > 40, tool.name
        assert tool.output_schema is not None, tool.name
    assert tools["search"].input_schema["required"] == ["query"]
    assert tools["search"].input_schema["properties"]["k"]["maximum"] == 50

    answer = await _call(client, "ask", question=CHARGE)
    assert "4.5 hours" in answer["answer"]
    assert "[1]" in answer["answer"]
    assert answer["refused"] is False
    assert answer["citations"][0]["source"] == "user-guide.md"
    assert "4.5 hours" in answer["citations"][0]["snippet"]

    # Workspaces apart: the birds know nothing of batteries, the default nothing of kestrels.
    refusal = await _call(client, "ask", question=CHARGE, workspace="birds")
    assert refusal["refused"] is True
    assert refusal["citations"] == []
    found = await _call(client, "search", query=KESTREL, k=3, workspace="birds")
    assert found["passages"][0]["source"] == "kestrel.md"
    assert found["passages"][0]["headings"] == "Kestrels"
    elsewhere = await _call(client, "search", query=KESTREL, k=10)
    assert all(p["source"] != "kestrel.md" for p in elsewhere["passages"])

    listed = await _call(client, "list_documents")
    assert {d["source"] for d in listed["documents"]} >= {"user-guide.md", "warranty.pdf"}
    workspaces = await _call(client, "list_workspaces")
    assert [w["name"] for w in workspaces["workspaces"]] == ["default", "birds"]
    assert workspaces["workspaces"][1]["chunks"] == 1

    page = await _call(client, "read_document", source="warranty.pdf", page=1)
    assert page["pages"] == [1, 2]
    assert "800 full charge cycles" in page["text"]
    first = await _call(client, "read_document", source="user-guide.md", max_chars=200)
    assert first["next_offset"] == 200
    rest = await _call(client, "read_document", source="user-guide.md", offset=200)
    assert rest["next_offset"] is None
    whole = first["text"] + rest["text"]
    assert len(whole) == first["total_chars"]
    assert "A full charge from empty takes about\n4.5 hours" in whole  # as in the file

    # Mistakes come back as tool errors with the CLI's message, never a traceback.
    assert "no workspace is named 'fish'" in await _error(
        client, "search", query="x", workspace="fish"
    )
    assert "has no page 9: its pages are 1 to 2" in await _error(
        client, "read_document", source="warranty.pdf", page=9
    )
    assert "no document 'nothing.md'" in await _error(client, "read_document", source="nothing.md")
    invalid = await _error(client, "search", query="", k=0)
    assert "query" in invalid
    assert "k\n" in invalid


async def test_an_mcp_client_over_stdio_uses_every_tool(data_dir: Path) -> None:
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "rag.cli", "mcp"], env=_environment(data_dir)
    )
    async with Client(server) as client:
        await _use_every_tool(client)


@pytest.fixture(scope="module")
def http_server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``rag mcp --http`` beyond loopback, with the key: every request meets the key check."""
    port = free_port()
    log = tmp_path_factory.mktemp("mcp-http") / "mcp.log"
    command = [sys.executable, "-m", "rag.cli", "mcp", "--http", "--host", "0.0.0.0"]
    command += ["--port", str(port)]
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=_environment(data_dir, RAG_SERVE__API_KEY=KEY),
        )
    url = f"http://127.0.0.1:{port}/mcp"
    wait_until_serving(url, lambda response: True, process, log)
    yield url
    process.terminate()
    process.wait(timeout=30)


async def test_an_mcp_client_over_http_uses_every_tool_with_the_key(http_server: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    transport = streamable_http_client(http_server, http_client=create_mcp_http_client(headers))
    async with Client(transport) as client:
        await _use_every_tool(client)


def test_the_http_server_refuses_a_request_without_the_key(http_server: str) -> None:
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.post(http_server, json=hello, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "a valid API key is needed"}


def test_the_http_server_will_not_listen_beyond_loopback_without_a_key(data_dir: Path) -> None:
    environment = _environment(data_dir)
    environment.pop("RAG_SERVE__API_KEY", None)
    refused = subprocess.run(
        [sys.executable, "-m", "rag.cli", "mcp", "--http", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert refused.returncode == EXIT_ERROR
    assert "listening on 0.0.0.0 needs serve.api_key" in refused.stderr
