"""`mpds push OUT_DIR REPO_ID`: upload a built dataset to the Hugging Face Hub."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("push", help="upload an `mpds build` folder as a Hub dataset repo")
    parser.add_argument("out_dir")
    parser.add_argument("repo_id", help="e.g. my-org/mpds")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", help="branch to push to")
    parser.add_argument("--token", help="Hub token (default: the one `hf auth login` saved)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mpds.data import push_to_hub

    url = push_to_hub(args.out_dir, args.repo_id, token=args.token, private=args.private, revision=args.revision)
    print(f"Pushed {args.out_dir} to {url}")
    return 0
