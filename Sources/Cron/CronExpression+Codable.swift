/// Encodes as the expression text (`"*/15 * * * *"`), so schedules read naturally in JSON configuration;
/// decoding parses the text and fails with the ``CronExpressionError`` message.
extension CronExpression: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            try self.init(text)
        } catch let error as CronExpressionError {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}
