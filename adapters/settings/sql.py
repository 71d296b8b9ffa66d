"""The ``adapters.sql`` section: the named databases ``sql.query`` may read."""

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.redaction import SECRET_REF


class SqlDatabase(BaseModel):
    """One database ``sql.query`` may read: its DSN (a secret reference) and limits."""

    model_config = ConfigDict(extra="forbid")

    dsn: str
    statement_timeout_s: float = Field(default=5.0, gt=0, le=300)
    max_rows: int = Field(default=200, ge=1, le=10_000)

    @field_validator("dsn")
    @classmethod
    def _secret_or_file(cls, value: str) -> str:
        if SECRET_REF.fullmatch(value.strip()):
            return value.strip()
        if value.startswith("sqlite:///") and "@" not in value:
            return value  # a local file holds no credential
        raise ValueError(
            "write the DSN as a secret reference like ${secret:ORDERS_DB_DSN} "
            "(a sqlite:///path may be given as it is)"
        )


class SqlConfig(BaseModel):
    """The ``adapters.sql`` section of the config file."""

    model_config = ConfigDict(extra="forbid")

    databases: dict[str, SqlDatabase] = Field(default_factory=dict)
    cost_per_call_usd: float = Field(default=0.0, ge=0)
