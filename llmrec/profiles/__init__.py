"""Long-term interest profiles: history digest -> LLM (or template) text + structured parts, stored in SQLite."""

from llmrec.profiles.digest import HistoryDigest, digest_history
from llmrec.profiles.facts import CatalogFacts
from llmrec.profiles.job import JobReport, long_term_request, run_profile_job
from llmrec.profiles.service import ProfileService
from llmrec.profiles.store import ProfileStore
from llmrec.profiles.writer import Profile, ProfileRequest, ProfileWriter, Provenance, WriterStats

__all__ = ["CatalogFacts", "HistoryDigest", "JobReport", "Profile", "ProfileRequest", "ProfileService",
           "ProfileStore", "ProfileWriter", "Provenance", "WriterStats", "digest_history", "long_term_request",
           "run_profile_job"]
