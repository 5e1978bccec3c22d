#!/usr/bin/env python3
"""The legacy Django site the importer tests read sessions from (settings come from the environment)."""
import os
import sys

if __name__ == '__main__':
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'legacy.settings')
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
