"""The bare baseline for bench/properties.py: FastAPI answering a small JSON body, no stores, no middleware.

.venv/bin/python -m uvicorn bench.echo_app:app --host 127.0.0.1 --port 8099
"""

from fastapi import FastAPI

app = FastAPI()


@app.get("/echo/{item_id}")
async def echo(item_id: str) -> dict[str, object]:
    return {"success": True, "message": "Echo", "data": {"id": item_id}}
