"""The ``appeal-desk`` command: serve, worker, migrate, check-config, token, export, forget.

Each command imports what it runs when it runs (no cycle is dodged: the service, the router's
evaluation and the privacy commands pull in aiogram, vkbottle, aiohttp and the classifier, which
``check-config`` and ``--help`` do not need; they start in half the time)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from desk.config.config_errors import ConfigError
from desk.config.errors import DeskError
from desk.config.settings import Settings, config_path, load_settings
from desk.features.answers import AnswerBook
from desk.ops.logs import setup_logging
from models import db


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appeal-desk",
        description="Customer appeals from Telegram, VK, email and the web in one stream.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML config file (default: $DESK_CONFIG or ./appeal-desk.yaml when present)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="HTTP API, web channel, enabled channels and workers")
    sub.add_parser("worker", help="stream and outbox workers only (to scale out)")
    sub.add_parser("migrate", help="apply database migrations")
    check = sub.add_parser(
        "check-config", help="validate the config; problems as file:key: reason, exit 1"
    )
    check.add_argument("file", nargs="?", type=Path, help="the file to check")
    evaluate = sub.add_parser(
        "router-eval", help="the classifier's accuracy on labelled appeals (held-out part)"
    )
    evaluate.add_argument(
        "--labelled", type=Path, help="a YAML list of {text, category} (default: the database)"
    )
    evaluate.add_argument("--held-out", type=float, default=0.2, help="share kept for testing")
    evaluate.add_argument(
        "--unseen",
        action="store_true",
        help="the file is an evaluation set written apart: score all of it, trained on the "
        "shipped seed examples only",
    )
    token = sub.add_parser("token", help="staff API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_sub.add_parser("create", help="create a token and print it once")
    create.add_argument("name")
    create.add_argument(
        "--role",
        choices=["agent", "supervisor", "manager"],
        default="supervisor",
        help="manager: may also export and forget customers' data (default: supervisor)",
    )
    create.add_argument(
        "--expires-in", metavar="PERIOD", help="the token stops working after 90d, 12h, 2w…"
    )
    token_sub.add_parser("list", help="the tokens: id, name, role, created, last used, expires")
    revoke = token_sub.add_parser("revoke", help="delete a stored token: it stops working at once")
    revoke.add_argument("token", metavar="ID_OR_NAME")
    who = "an id, a channel address (telegram:12345, vk:…, phone:+7…), an email or a phone"
    export = sub.add_parser("export", help="everything the desk holds about a customer, as JSON")
    export.add_argument("--customer", required=True, metavar="ID", help=who)
    export.add_argument("--out", type=Path, help="write to this file (default: print)")
    forget = sub.add_parser(
        "forget", help="erase a customer's personal data; keep the figures for reports"
    )
    forget.add_argument("--customer", required=True, metavar="ID", help=who)
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    path = args.config or getattr(args, "file", None) or config_path()
    try:
        settings = load_settings(path, use_default_path=False)
        AnswerBook.of(settings)  # the answer templates are configuration too
    except ConfigError as exc:
        print("appeal-desk: the configuration has problems:", file=sys.stderr)
        for line in exc.problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    if args.command == "check-config":
        print(f"{path or 'settings'}: OK")
        return 0
    setup_logging(settings)
    try:
        return asyncio.run(_run(args, settings))
    except KeyboardInterrupt:
        return 130
    except (DeskError, OSError) as exc:
        print(f"appeal-desk: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the command's root: a clear line, the details in the log
        logging.getLogger("desk.runtime.cli").debug("command failed", exc_info=True)
        print(f"appeal-desk: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "migrate":
        pending = await db.pending_migrations(settings.database_url)
        await db.migrate(settings.database_url)
        print(f"applied {len(pending)} migration(s)" if pending else "nothing to apply")
        return 0
    if args.command == "router-eval":
        return await _router_eval(args, settings)
    if args.command == "token":
        from desk.runtime.token_commands import token_command

        await db.connect(settings.database_url)
        try:
            return await token_command(args, settings)
        finally:
            await db.disconnect()
    if args.command in ("export", "forget"):
        command = _export if args.command == "export" else _forget
        await db.connect(settings.database_url)
        try:
            return await command(args)
        finally:
            await db.disconnect()
    from desk.runtime.service import run_until_stopped

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_until_stopped(settings, args.command, sys.stdout, stop)
    return 0


async def _export(args: argparse.Namespace) -> int:
    """Print (or write) the export document of one customer."""
    import json

    from desk.appeals.customers import customer_by_ref
    from desk.context import utc_now
    from desk.features.data_export import export_customer

    found = await customer_by_ref(args.customer)
    document = await export_customer(found, utc_now()) if found is not None else None
    if document is None:
        print(f"appeal-desk: no customer matches '{args.customer}'", file=sys.stderr)
        return 1
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"customer {found}: written to {args.out}")
    return 0


async def _forget(args: argparse.Namespace) -> int:
    """Erase one customer's personal data after a confirmation (or ``--yes``)."""
    from desk.appeals.customers import customer_by_ref
    from desk.context import utc_now
    from desk.features.forget import forget_customer
    from models import Appeal, Customer

    found = await customer_by_ref(args.customer)
    customer = await Customer.get_or_none(id=found) if found is not None else None
    if customer is None:
        print(f"appeal-desk: no customer matches '{args.customer}'", file=sys.stderr)
        return 1
    if not args.yes:
        appeals = await Appeal.filter(customer_id=customer.id).count()
        print(
            f"customer {customer.id} ({customer.name or 'no name'}), {appeals} appeal(s): "
            "names, addresses, texts, files and comments will be erased for good."
        )
        try:
            answer = await asyncio.to_thread(input, "Type 'forget' to go on: ")
        except EOFError:
            answer = ""
        if answer.strip() != "forget":
            print("nothing was changed")
            return 1
    done = await forget_customer(customer.id, actor="cli", now=utc_now())
    if done is None:  # deleted by someone else in between
        print(f"appeal-desk: no customer matches '{args.customer}'", file=sys.stderr)
        return 1
    if done.already:
        print(f"customer {customer.id} was forgotten before; nothing personal was left")
        return 0
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in done.describe().items())
    print(f"customer {customer.id} forgotten: {counts}")
    return 0


async def _router_eval(args: argparse.Namespace, settings: Settings) -> int:
    """Print the classifier's accuracy: labelled examples from a file or the database."""
    from desk.config.settings import categories_of, seed_examples_of
    from models import LabelledExample
    from router.classify import Classifier
    from router.evaluate import evaluate, measure
    from router.model import TextModel

    languages: dict[str, str] = {}
    if args.labelled is not None:
        import yaml

        try:
            data = yaml.safe_load(args.labelled.read_text(encoding="utf-8")) or []
        except yaml.YAMLError as exc:
            print(f"appeal-desk: {args.labelled} is not readable YAML: {exc}", file=sys.stderr)
            return 1
        rows = data if isinstance(data, list) else []
        examples = [
            (str(x["text"]), str(x["category"]))
            for x in rows
            if isinstance(x, dict) and x.get("text") and x.get("category")
        ]
        languages = {
            str(x["text"]): str(x["lang"])
            for x in rows
            if isinstance(x, dict) and x.get("text") and x.get("lang")
        }
    elif args.unseen:
        print("appeal-desk: --unseen needs --labelled FILE", file=sys.stderr)
        return 1
    else:
        await db.connect(settings.database_url)
        try:
            rows = await LabelledExample.all().values_list("text", "category")
        finally:
            await db.disconnect()
        examples = [(str(t), str(c)) for t, c in rows]
    if len(examples) < 10:
        print(f"only {len(examples)} labelled appeals: too few to measure (need 10 or more)")
        return 1
    rules = [(c.id, c.match) for c in categories_of(settings)]
    seeds = seed_examples_of(settings)
    threshold = settings.router.confident
    if args.unseen:
        labelled = {text for text, _ in examples}
        kept = [(text, category) for text, category in seeds if text not in labelled]
        model = TextModel.trained([], seeds=kept)
        classifier = Classifier(rules, model, confident=0.0)
        result = measure(
            classifier, examples, trained_on=len(kept), threshold=threshold, languages=languages
        )
        print(f"trained on {len(kept)} shipped seed examples, tested on {result.tested_on} unseen")
    else:
        result = evaluate(
            examples,
            rules,
            held_out=args.held_out,
            seeds=seeds,
            threshold=threshold,
            languages=languages,
        )
        shipped = f" ({result.seeds} of them shipped seed examples)" if result.seeds else ""
        print(f"trained on {result.trained_on}{shipped}, tested on {result.tested_on} held-out")
    print(f"accuracy  {result.accuracy:.1%}   (every appeal placed; unsure: {result.unsure})")
    print(
        f"at confidence {threshold:.2f}: {result.answered_accuracy:.1%} right of those placed, "
        f"{result.abstention:.1%} left to a person "
        f"({result.answered_right / max(1, result.tested_on):.1%} of all placed right)"
    )
    for category, share in result.per_category.items():
        print(f"  {category:<16} {share:.1%}")
    for language, share in result.per_language.items():
        print(f"  language {language:<7} {share:.1%}")
    for wanted, got, count in result.confusions:
        print(f"  mistaken: {wanted} → {got} ×{count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
