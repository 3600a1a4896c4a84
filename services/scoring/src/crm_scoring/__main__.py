from crm_scoring.app import create_service
from crm_scoring.settings import ScoringSettings
from crm_shared.service import serve


def main() -> None:
    settings = ScoringSettings()
    serve(create_service(settings), settings)


if __name__ == "__main__":
    main()
