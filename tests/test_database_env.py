"""Reading the upstream chart's database variables (dpd/database_env.py):
the secrets file as the upstream writes it, and the schema as libpq needs it."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from dpd.database_env import search_path_option, secrets_file_values, upstream_password

NAME = "SKA_DATAPRODUCT_API_POSTGRESQL_PASSWORD"


def test_the_secrets_file_reads_like_an_env_file(tmp_path):
    secrets = tmp_path / ".secrets"
    secrets.write_text(
        "# mounted from the chart's secret\n"
        "\n"
        "export OTHER=x\n"
        f"{NAME} = 'p#ss w=rd'\n"
        'QUOTED="a \\"b\\" c"\n'
        "PLAIN=value # a comment\n"
        "not a line\n"
    )

    values = secrets_file_values(secrets)

    assert values == {"OTHER": "x", NAME: "p#ss w=rd", "QUOTED": 'a "b" c', "PLAIN": "value"}


def test_the_environment_wins_over_the_file_and_a_missing_file_is_no_file(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.write_text(f"{NAME}=from-file\n")
    path_variable = {"SKA_DATAPRODUCT_API_SECRETS_FILE_PATH": str(secrets)}

    assert upstream_password({**path_variable, NAME: "from-env"}) == ("from-env", NAME)
    assert upstream_password(path_variable)[0] == "from-file"
    password, where = upstream_password({"SKA_DATAPRODUCT_API_SECRETS_FILE_PATH": "/no/such"})
    assert password == "" and "/no/such" in where


def test_a_directory_as_secrets_file_stops_start_up(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="cannot read"):
        secrets_file_values(tmp_path)


def test_the_schema_becomes_a_quoted_search_path_libpq_does_not_split():
    assert search_path_option("public") == '-c search_path="public"'
    assert search_path_option('my "odd" schema') == '-c search_path="my\\ ""odd""\\ schema"'
