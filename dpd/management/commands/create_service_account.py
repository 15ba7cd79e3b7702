from django.core.management.base import BaseCommand, CommandError

from dpd.service_accounts import ServiceAccountError, service_account_create


class Command(BaseCommand):
    help = (
        "Create (or update) a service account: a password-less user with an API token "
        "(`Authorization: Token <key>`), group memberships and optional permissions to "
        "ingest and re-index. Prints the token."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--group",
            action="append",
            default=[],
            help="Access group (repeatable); products whose context.access_group equals it "
            "become visible.",
        )
        parser.add_argument("--can-ingest", action="store_true", help="May ingest products.")
        parser.add_argument("--can-reindex", action="store_true", help="May start re-indexes.")
        parser.add_argument(
            "--rotate-token", action="store_true", help="Replace the existing token."
        )

    def handle(self, *args, **options):
        try:
            account = service_account_create(
                options["name"],
                groups=options["group"],
                can_ingest=options["can_ingest"],
                can_reindex=options["can_reindex"],
                rotate_token=options["rotate_token"],
            )
        except ServiceAccountError as exc:
            raise CommandError(str(exc)) from None
        verb = "Created" if account.created else "Updated"
        self.stderr.write(
            f"{verb} service account {account.username}: groups "
            f"{', '.join(account.groups) or '(none)'}; permissions "
            f"{', '.join(account.permissions) or '(none)'}"
        )
        self.stdout.write(account.token)
