"""The bundled model: its corpus generator (``corpus``), its training (``train``) and its files (``assets/``)."""
