"""The `pixyz` user commands: the PiXYZ API client's commands, flags and exit codes, on the SDK.

    pixyz [-u URL] list | doc -n NAME | jobs | version
    pixyz status -j ID [-w] | details -j ID | outputs -j ID
    pixyz download -j ID -f FILE [-o OUT] | download_all -j ID [-o OUT.zip]
    pixyz exec -s SCRIPT [-i INPUT] [-p JSON] [-e ENTRY] [-q QUEUE] [-l LIMIT] [-w] [-r] [-a ALIAS]
               [-b]
    pixyz process -n NAME [-i INPUT] [-p JSON] [-e ENTRY] [-q QUEUE] [-l LIMIT] [-w] [-r] [-a ALIAS]
                  [-b]
    pixyz convert -i INPUT [-p JSON] [-o OUT] | thumbnails -i INPUT [-p JSON] [-o DIR]
    pixyz metadata -i INPUT [-o FILE]

Every command takes `-t/--token` (default `$PIXYZ_API_KEY`), `--json` (one JSON
document on stdout, nothing else there) and `--quiet` (no notes, no bars); the
URL comes from `-u/--url`, before or after the command (default `$PIXYZ_URL`,
else http://127.0.0.1:8000). Bars go to stderr, only when it is a terminal.

Exit codes: 0 done; 1 the server answered an error (printed as
`Error 404: Not Found: <details>` on stderr) or could not be reached; 2 bad
arguments. A command that waits for a job exits with the code of its final
status, as the existing client's batch mode does: SUCCESS 0, FAILURE 10,
REVOKED 11 (RETRY 12, PENDING 13, STARTED 14, RECEIVED 15, REJECTED 16, UNKNOWN 17).

`pixyz` (serve_app/cli.py) hooks these in with `add_commands`; `python -m pixyz_client`
runs them without the server's code installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixyz_client.client import Client
from pixyz_client.errors import PixyzError
from pixyz_client.job import Job

EXIT_CODES = {
    "SUCCESS": 0,
    "FAILURE": 10,
    "REVOKED": 11,
    "RETRY": 12,
    "PENDING": 13,
    "STARTED": 14,
    "RECEIVED": 15,
    "REJECTED": 16,
    "UNKNOWN": 17,
}
"""Exit code of a command that waited for a job, by the job's final status."""

ERROR_EXIT = 1
INTERRUPTED_EXIT = 130

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9 _.+-]")


def exit_code(status: str) -> int:
    return EXIT_CODES.get(status, EXIT_CODES["UNKNOWN"])


@dataclass
class Console:
    """Where a command's output goes: results on stdout, notes and errors on stderr/stdout."""

    json: bool = False
    quiet: bool = False
    bars: bool = False

    def result(self, value: Any) -> None:
        """The command's answer: indented JSON for people, one line with --json."""
        if self.json:
            print(json.dumps(value), flush=True)
        else:
            print(json.dumps(value, indent=4), flush=True)

    def note(self, text: str) -> None:
        """A line for people (what was done, where files went); none with --json or --quiet."""
        if not (self.json or self.quiet):
            print(text, flush=True)

    def error(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


Handler = Callable[[Client, argparse.Namespace, Console], int]


# -- argument types ---------------------------------------------------------------------------


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc.msg} at position {exc.pos})"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, not {type(value).__name__}")
    return value


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: '{text}'")
    return path


# -- commands ---------------------------------------------------------------------------------


def _list(client: Client, args: argparse.Namespace, console: Console) -> int:
    console.result({"processes": client.processes()})
    return 0


def _doc(client: Client, args: argparse.Namespace, console: Console) -> int:
    answer = client.request("GET", f"/processes/{args.name}").json()
    schema = answer.get("params_schema")
    if console.json:
        console.result({"name": args.name, "doc": answer["doc"], "params_schema": schema})
    else:
        print(answer["doc"])
        if schema:
            print("\nJSON Schema of params:")
            print(json.dumps(schema, indent=2))
    return 0


def _jobs(client: Client, args: argparse.Namespace, console: Console) -> int:
    console.result({"jobs": client.jobs()})
    return 0


def _version(client: Client, args: argparse.Namespace, console: Console) -> int:
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("pixyz-ray")
    except PackageNotFoundError:
        number = "unknown"
    if console.json:
        console.result({"client": number})
    else:
        print(f"pixyz client v{number}")
    return 0


def _status(client: Client, args: argparse.Namespace, console: Console) -> int:
    job = client.job(args.jobid)
    if not args.watch:
        console.result(job.state())
        return 0
    details = job.wait()
    console.result(
        {key: details.get(key) for key in ("uuid", "name", "status", "progress", "error")}
    )
    return exit_code(details["status"])


def _details(client: Client, args: argparse.Namespace, console: Console) -> int:
    console.result(client.job(args.jobid).details())
    return 0


def _outputs(client: Client, args: argparse.Namespace, console: Console) -> int:
    console.result({"outputs": client.job(args.jobid).outputs()})
    return 0


def _download(client: Client, args: argparse.Namespace, console: Console) -> int:
    path = client.job(args.jobid).download(args.file, args.output)
    size = path.stat().st_size
    if console.json:
        console.result({"uuid": args.jobid, "file": args.file, "path": str(path), "bytes": size})
    console.note(
        f"Job [ {args.jobid} ] output '{args.file}' downloaded to '{path}' ({_size(size)})"
    )
    return 0


def _download_all(client: Client, args: argparse.Namespace, console: Console) -> int:
    path = client.job(args.jobid).download_all(args.output)
    size = path.stat().st_size
    if console.json:
        console.result({"uuid": args.jobid, "path": str(path), "bytes": size})
    console.note(f"Job [ {args.jobid} ] outputs downloaded to '{path}' ({_size(size)})")
    return 0


def _exec(client: Client, args: argparse.Namespace, console: Console) -> int:
    return _run_job(client, args, console, "custom", script=args.script)


def _process(client: Client, args: argparse.Namespace, console: Console) -> int:
    return _run_job(client, args, console, args.name, script=None)


def _run_job(
    client: Client, args: argparse.Namespace, console: Console, process: str, script: Path | None
) -> int:
    """`exec` and `process`: submit, then print the id (-b), or follow the job (-w)."""
    job = client.submit(
        process,
        file=args.input,
        script=script,
        params=args.params,
        config=_config(args),
        name=args.alias,
    )
    if args.batch:
        print(job.uuid, flush=True)
        return exit_code(job.wait(progress=False)["status"]) if args.watch else 0
    if not args.watch:
        if console.json:
            console.result(job.submitted)
        console.note(f"Job [ {job.uuid} ] submitted ({process})")
        return 0
    details = _follow(job, console, process)
    if console.json or args.result:
        console.result(details)
    return exit_code(details["status"])


def _convert(client: Client, args: argparse.Namespace, console: Console) -> int:
    """`convert`: params default to the output's name and extension, then fetch every file."""
    params = dict(args.params)
    output = Path(args.output) if args.output else None
    # An output with an extension names the file; without one it is a folder.
    names_file = output is not None and bool(output.suffix) and not output.is_dir()
    if names_file and "extension" not in params:
        params["extension"] = output.suffix.lstrip(".").lower()
    if "filename" not in params:
        stem = _safe_stem(output.stem if names_file else args.input.stem)
        if stem:
            params["filename"] = stem
    job = client.submit(
        "convert_file", file=args.input, params=params, config=_config(args), name=args.alias
    )
    details = _follow(job, console, "convert_file")
    if details["status"] != "SUCCESS":
        return _unsuccessful(job, details, console)
    result = details["result"] or {}
    main = result["output"]
    target = output if names_file else (output or Path.cwd()) / main
    written = [job.download(main, target)]
    for side in result.get("files") or []:
        if side != main:  # .bin and textures of glTF, .mtl and images of OBJ: beside the model
            written.append(job.download(side, target.parent / side))
    if console.json:
        console.result(_job_files(job, details, written))
    extra = f" (+{len(written) - 1} side files)" if len(written) > 1 else ""
    console.note(f"Job [ {job.uuid} ] converted '{args.input}' to '{target}'{extra}")
    return 0


def _thumbnails(client: Client, args: argparse.Namespace, console: Console) -> int:
    folder = Path(args.output) if args.output else Path(f"{args.input.stem}_thumbnails")
    job = client.submit(
        "generate_thumbnails",
        file=args.input,
        params=args.params,
        config=_config(args),
        name=args.alias,
    )
    details = _follow(job, console, "generate_thumbnails")
    if details["status"] != "SUCCESS":
        return _unsuccessful(job, details, console)
    written = [job.download(name, folder / name) for name in job.outputs()]
    if console.json:
        console.result(_job_files(job, details, written))
    names = ", ".join(path.relative_to(folder).as_posix() for path in written)
    console.note(f"Job [ {job.uuid} ] wrote {len(written)} files to '{folder}': {names}")
    return 0


def _metadata(client: Client, args: argparse.Namespace, console: Console) -> int:
    job = client.submit("generate_metadata", file=args.input, config=_config(args), name=args.alias)
    details = _follow(job, console, "generate_metadata")
    if details["status"] != "SUCCESS":
        return _unsuccessful(job, details, console)
    if args.output is None:
        console.result((details["result"] or {}).get("metadata"))
        return 0
    path = job.download("metadata.json", args.output)
    if console.json:
        console.result(_job_files(job, details, [path]))
    console.note(f"Job [ {job.uuid} ] metadata written to '{path}'")
    return 0


# -- helpers ----------------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> dict[str, Any]:
    # None means the server's default (the process's queue, the operator's time limit).
    return {
        "entrypoint": getattr(args, "entrypoint", None),
        "queue": args.queue,
        "time_limit": args.limit,
    }


def _follow(job: Job, console: Console, process: str) -> dict[str, Any]:
    """Wait for a job with its bar, then say how it ended (failures on stderr)."""
    console.note(f"Job [ {job.uuid} ] submitted ({process})")
    start = time.monotonic()
    details = job.wait()
    status = details["status"]
    if status == "SUCCESS":
        console.note(f"Job [ {job.uuid} ] SUCCESS in {time.monotonic() - start:.1f} s")
    else:
        console.error(f"Job [ {job.uuid} ] {status}: {details.get('error') or 'no error message'}")
    return details


def _unsuccessful(job: Job, details: dict[str, Any], console: Console) -> int:
    """A job that did not succeed: its report with no files under --json, its exit code."""
    if console.json:
        console.result(_job_files(job, details, []))
    return exit_code(details["status"])


def _job_files(job: Job, details: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    return {
        "uuid": job.uuid,
        "status": details["status"],
        "files": [str(path) for path in paths],
        "result": details.get("result"),
    }


def _safe_stem(stem: str) -> str:
    """A name convert_file accepts (letters, digits, ` _.+-`, starting alphanumeric), or ''."""
    return _UNSAFE_NAME.sub("_", stem).lstrip(" _.+-")[:100].rstrip()


def _size(num: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num < 1024 or unit == "GiB":
            return f"{num:.1f} {unit}" if unit != "B" else f"{int(num)} B"
        num /= 1024
    return f"{num:.1f} GiB"


def _command(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """A handler as `args.func`: builds the client, prints errors, returns the exit code."""

    def run(args: argparse.Namespace) -> int:
        # `pixyz` logs at INFO for `serve`; httpx would log every request of these commands.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        batch = getattr(args, "batch", False)
        console = Console(
            json=args.json,
            quiet=args.quiet or batch,
            bars=not (args.quiet or batch) and sys.stderr.isatty(),
        )
        try:
            with Client(getattr(args, "url", None), args.token, progress=console.bars) as client:
                return handler(client, args, console)
        except PixyzError as exc:
            console.error(_error_line(exc))
            return ERROR_EXIT
        except OSError as exc:  # a local file that cannot be read or written
            console.error(f"Error: {exc}")
            return ERROR_EXIT
        except KeyboardInterrupt:
            console.error("Interrupted (the job, if any, keeps running on the server)")
            return INTERRUPTED_EXIT

    return run


def _error_line(exc: PixyzError) -> str:
    if exc.code is None:
        return f"Error: {exc.message}: {exc.details}" if exc.details else f"Error: {exc.message}"
    return f"Error {exc.code}: {exc.message}: {exc.details}"


# -- parser -----------------------------------------------------------------------------------


def add_commands(parser: argparse.ArgumentParser, commands: argparse._SubParsersAction) -> None:
    """Add the user commands (and the global `-u/--url`) to a `pixyz` parser."""
    parser.add_argument(
        "-u",
        "--url",
        default=None,
        help="URL of the API (default: $PIXYZ_URL, else http://127.0.0.1:8000)",
    )
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a URL given before the command is not overwritten by this one's default.
    common.add_argument("-u", "--url", default=argparse.SUPPRESS, help="URL of the API")
    common.add_argument("-t", "--token", default=None, help="API key (default: $PIXYZ_API_KEY)")
    common.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout, nothing else"
    )
    common.add_argument("--quiet", action="store_true", help="no notes and no progress bars")

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(func=_command(handler))
        return sub

    command("list", _list, "list the processes jobs can run")
    command("doc", _doc, "show a process's documentation").add_argument(
        "-n", "--name", required=True, help="process name"
    )
    command("jobs", _jobs, "list every job's status")
    command("version", _version, "print the client's version")

    for name, handler, help in (
        ("status", _status, "show a job's status (-w: follow it to its end)"),
        ("details", _details, "show a job's details: steps, times, result, error"),
        ("outputs", _outputs, "list a job's output files"),
    ):
        sub = command(name, handler, help)
        sub.add_argument("-j", "--jobid", required=True, help="the job's uuid")
        if name == "status":
            sub.add_argument("-w", "--watch", action="store_true", help="wait for the job to end")

    sub = command("download", _download, "download one output file of a job")
    sub.add_argument("-j", "--jobid", required=True, help="the job's uuid")
    sub.add_argument("-f", "--file", required=True, help="output path, as `outputs` lists it")
    sub.add_argument("-o", "--output", help="file or folder to save to (default: ./<file name>)")

    sub = command("download_all", _download_all, "download all outputs of a job as one zip")
    sub.add_argument("-j", "--jobid", required=True, help="the job's uuid")
    sub.add_argument("-o", "--output", help="zip path or folder (default: ./<uuid>.zip)")

    sub = command("exec", _exec, "run a local Python script as a `custom` job")
    sub.add_argument("-s", "--script", type=_existing_file, required=True, help="the script")
    _job_arguments(sub)
    sub.add_argument("-e", "--entrypoint", default="main", help="function to run (default: main)")

    sub = command("process", _process, "run a process of the server (see `list`)")
    sub.add_argument("-n", "--name", required=True, help="process name")
    _job_arguments(sub)
    sub.add_argument("-e", "--entrypoint", default=None, help="function to run (default: main)")

    sub = command("convert", _convert, "convert a model (convert_file) and download the result")
    _input_arguments(sub, required=True)
    sub.add_argument(
        "-p", "--params", type=_json_object, default={}, help='e.g. \'{"extension": "glb"}\''
    )
    sub.add_argument(
        "-o",
        "--output",
        help="file (its name and extension become the params' defaults) or folder "
        "(default: ./<input name>.glb)",
    )

    sub = command("thumbnails", _thumbnails, "render thumbnails (generate_thumbnails)")
    _input_arguments(sub, required=True)
    sub.add_argument(
        "-p",
        "--params",
        type=_json_object,
        default={},
        help='e.g. \'{"width": 256, "height": 256}\'',
    )
    sub.add_argument("-o", "--output", help="folder for the files (default: ./<input>_thumbnails)")

    sub = command("metadata", _metadata, "describe a model (generate_metadata)")
    _input_arguments(sub, required=True)
    sub.add_argument("-o", "--output", help="write metadata.json there (default: print it)")


def _input_arguments(sub: argparse.ArgumentParser, required: bool) -> None:
    sub.add_argument("-i", "--input", type=_existing_file, required=required, help="input model")
    sub.add_argument("-q", "--queue", default=None, help="queue: cpu, gpu or gpuhigh")
    sub.add_argument("-l", "--limit", type=int, default=None, help="time limit in seconds")
    sub.add_argument("-a", "--alias", default=None, help="a name for the job")


def _job_arguments(sub: argparse.ArgumentParser) -> None:
    _input_arguments(sub, required=False)
    sub.add_argument(
        "-p", "--params", type=_json_object, default={}, help="params as a JSON object"
    )
    sub.add_argument("-w", "--watch", action="store_true", help="wait for the job to end")
    sub.add_argument(
        "-r", "--result", action="store_true", help="with -w: print the job's details at the end"
    )
    sub.add_argument(
        "-b",
        "--batch",
        action="store_true",
        help="print only the job's uuid; with -w, exit with the code of its final status",
    )


def build_parser() -> argparse.ArgumentParser:
    """The client's parser on its own, for `python -m pixyz_client`."""
    parser = argparse.ArgumentParser(prog="pixyz", description="PiXYZ API client.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_commands(parser, commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
