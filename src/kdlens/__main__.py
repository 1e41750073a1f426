from kdlens.cli import main

if __name__ == "__main__":  # spawned search workers import this module without running it
    raise SystemExit(main())
