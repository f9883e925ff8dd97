"""What the commands need to know about the machine (or an image, under a root).

cloud-init's configuration and module lists (:mod:`.cloudcfg`), the drop-in
``bosky install`` states them in (:mod:`.dropin`), the files install marks as
its own (:mod:`.marked`), the Python that runs cloud-init and its version
(:mod:`.python`), and systemd with the reporter's units (:mod:`.units`).

Nothing here is a command and nothing here runs at boot: ``tools/`` and the
doctor checks (:mod:`cc_bosky.checks`) import it, never the other way round.
"""
