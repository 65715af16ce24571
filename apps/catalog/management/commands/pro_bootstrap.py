from django.conf import settings
from django.core.management.base import BaseCommand

from apps.catalog.bootstrap import bootstrap


class Command(BaseCommand):
    help = "Prepare a fresh platform: built-in runtime and groups, first admin, platform key, sample apps."

    def add_arguments(self, parser):
        parser.add_argument("--no-samples", action="store_true", help="Do not publish the sample apps.")

    def handle(self, no_samples: bool, **options):
        report = bootstrap(samples_dir=None if no_samples else settings.PRO_EXAMPLES_DIR)
        for line in report:
            self.stdout.write(line)
