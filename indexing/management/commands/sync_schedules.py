from django.core.management.base import BaseCommand

from indexing.tasks import sync_schedules


class Command(BaseCommand):
    help = (
        "Upsert the django-q2 schedules declared in code (indexing/tasks.py) by name; "
        "INDEXING_SCHEDULE_MINUTES=0 removes the periodic re-index. runservice does this "
        "at start-up."
    )

    def handle(self, *args, **options):
        for line in sync_schedules():
            self.stdout.write(line)
