"""Real speech for the voice tests: Debian's espeak-ng speaking a sentence into a WAV file (a missing binary fails,
never skips; .ci/run installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def spoken_wav(directory: Path, sentence: str) -> Path:
    binary = shutil.which("espeak-ng")
    assert binary, "espeak-ng is needed (apt-get install espeak-ng; .ci/run installs it)"
    path = directory / "speech.wav"
    subprocess.run([binary, "-w", str(path), sentence], check=True, timeout=60)
    return path
