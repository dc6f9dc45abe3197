"""An ordinary FastAPI service (no OpenSergo import) calling the Flask backend over httpx by its
service name, forwarding the caller's ``x-user-tier`` header."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, Request
from pydantic import BaseModel

app = FastAPI(title="frontend")
client = httpx.AsyncClient(timeout=10)


class Greeting(BaseModel):
    backend: dict[str, object]
    via: str


@app.get("/call/{user_id}", response_model=Greeting)
async def call(user_id: int, request: Request) -> Greeting:
    headers = {}
    if "x-user-tier" in request.headers:
        headers["x-user-tier"] = request.headers["x-user-tier"]
    response = await client.get(f"http://backend-app/hello/{user_id}", headers=headers)
    return Greeting(backend=response.json(), via="frontend")
