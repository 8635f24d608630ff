"""A process that writes usage records through the real Ledger as fast as it can, for
``test_ledger_kill9.py``.

    python tests/e2e/ledger_writer_proc.py DB_PATH [PREFIX] [POSTGRES_URL]

With a PostgreSQL URL the rows go there, and DB_PATH names the local spool beside it.

Prints ``READY`` once the ledger is open, then ``ACK <request id> END`` for every record the
writer has committed (acknowledged), and never stops on its own: the test kills it with SIGKILL.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.catalog.prices import PriceBook  # noqa: E402
from app.config import LedgerSettings, parse_config  # noqa: E402
from app.events import Usage, finished_request  # noqa: E402
from app.ledger.writer import Ledger  # noqa: E402
from tests.config_text import ANTHROPIC_CLIENT, OLLAMA

CONFIG = ANTHROPIC_CLIENT + OLLAMA

BODY = b'{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"' + b"x" * 3000 + b'"}]}'


def main() -> int:
    path = Path(sys.argv[1])
    prefix = sys.argv[2] if len(sys.argv) > 2 else "r"
    out = sys.stdout

    def acknowledged(ids: object) -> None:
        out.write("".join(f"ACK {i} END\n" for i in ids))  # type: ignore[attr-defined]
        out.flush()

    prices = PriceBook.load(parse_config(CONFIG))
    if len(sys.argv) > 3:
        from app.ledger.pg import PgStore
        from app.ledger.spool import Spool

        ledger = Ledger(path, prices=prices, settings=LedgerSettings(capture="all"), store=PgStore(sys.argv[3]),
                        spool=Spool(path), instance=f"writer-{prefix}")
    else:
        ledger = Ledger(path, prices=prices, settings=LedgerSettings(capture="all"))
    ledger.on_commit = acknowledged
    ledger.start()
    out.write("READY\n")
    out.flush()
    i = 0
    while True:
        now = time.time()
        failed = i % 17 == 0
        ledger.record(finished_request(
            f"{prefix}-{i}", now - 2, ended_at=now, session_id=f"session-{i // 100}", client="claude-cli/2.1.332",
            backend="ollama" if i % 5 == 0 else "anthropic", model="claude-sonnet-4-5",
            status=500 if failed else 200, error_type="api_error" if failed else None,
            error_message="boom" if failed else None, ttft_ms=150.0, duration_ms=2000.0,
            usage=Usage(1000 + i % 100, 200, 50, 4000), request_body=BODY, response_body=b"event: message_stop\n\n"))
        i += 1
        if ledger.queued > 20_000:  # the writer is the part under test; keep memory bounded
            time.sleep(0.001)


if __name__ == "__main__":
    raise SystemExit(main())
