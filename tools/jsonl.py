"""Reading the JSON-lines files moco writes (metrics.jsonl, `moco bench --jsonl`), for the tools beside it."""
import json
import sys


def records(path):
    """Yields (line number, object) for each non-blank line of path; exits naming the line when one is not JSON."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not a JSON line ({e})")
